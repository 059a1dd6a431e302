"""Benchmark: augmentation speed on the CPU, and its share of a training step.

1. One 572 x 572 sample (image + target + weights) through :func:`augment_batch` with the
   default :class:`AugmentConfig` (elastic + rotations/flips + free rotation + scale + shift +
   gray values): milliseconds (median, and the best run).
2. The 'fast' preset network at its training tile (188 x 188, batch 4): one training step
   (forward, weighted cross-entropy, backward, Adam) against augmenting that batch and against
   a whole ``TileSampler.sample`` (tile extraction + augmentation).

    python benchmarks/bench_augment.py [--threads 2] [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from napari_unet.annotations.targets import instances_to_annotations, make_targets
from napari_unet.config import MODEL_PRESETS, AugmentConfig
from napari_unet.dataset.augment import augment_batch
from napari_unet.dataset.sampler import TileSampler
from napari_unet.samples import make_touching_cells


class _Ms(float):
    """Median milliseconds that prints as "median ms (best b)": the best run is the closest to an
    idle machine when others share the cores."""

    def __format__(self, spec):
        return f"{float(self):{spec}} ms (best {self.best:{spec}})"


def _median_ms(fn, repeats: int, warmup: int = 3) -> _Ms:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    out = _Ms(1000.0 * float(np.median(times)))
    out.best = 1000.0 * float(np.min(times))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, cores: {os.cpu_count()}, "
          f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    config = AugmentConfig()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 572, 572)
    target = torch.randint(0, 2, (1, 572, 572))
    weights = torch.rand(1, 572, 572)
    ms = _median_ms(lambda: augment_batch(image, target, weights, config, generator), args.repeats)
    print(f"augment one 572x572 sample (image+target+weights, all transforms): {ms:.1f}")
    geo = AugmentConfig(gamma_range=(1, 1), contrast_range=(1, 1), brightness=0, noise_std=0)
    ms_geo = _median_ms(lambda: augment_batch(image, target, weights, geo, generator), args.repeats)
    print(f"  geometric part only: {ms_geo:.1f}")

    try:
        from napari_unet.model.unet import UNet
    except ImportError:  # pragma: no cover
        print("napari_unet.model.unet not available: skipping the training-step comparison")
        return
    from napari_unet.training.loss import weighted_cross_entropy

    model = UNet.from_config(MODEL_PRESETS["fast"])
    tile = tuple(model.valid_input_shape((188, 188)))
    out = tuple(model.output_shape(tile))
    b = args.batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(b, 1, *tile)
    y = torch.randint(0, 2, (b, *out))
    w = torch.rand(b, *out)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = weighted_cross_entropy(model(x), y, w)
        loss.backward()
        optimizer.step()

    step_ms = _median_ms(step, max(5, args.repeats // 3))
    print(f"'fast' preset training step, batch {b} of {tile[0]}x{tile[1]} -> {out[0]}x{out[1]}: {step_ms:.1f}")

    from napari_unet.dataset.augment import geometric_margin

    m = geometric_margin(config, tile)
    region = (tile[0] + 2 * m, tile[1] + 2 * m)
    xi = torch.rand(b, 1, *region)
    yi = torch.randint(0, 2, (b, *region))
    wi = torch.rand(b, *region)
    aug_ms = _median_ms(
        lambda: augment_batch(xi, yi, wi, config, generator, out_shape=tile, target_shape=out), args.repeats
    )
    print(f"augment that batch ({b} tiles, {region[0]}x{region[1]} context): {aug_ms:.1f} = "
          f"{100 * aug_ms / step_ms:.1f} % of a step (median / median)")

    img, inst, _ = make_touching_cells((512, 512), seed=0)
    ann = instances_to_annotations(inst).astype(np.int32)
    plane = (img.astype(np.float32) / img.max())[None]
    sampler = TileSampler([plane], [make_targets(ann)], input_shape=tile, output_shape=out, augment=config, seed=0)
    sample_ms = _median_ms(lambda: sampler.sample(b), args.repeats)
    print(f"TileSampler.sample({b}) (extract + augment): {sample_ms:.1f} = "
          f"{100 * sample_ms / step_ms:.1f} % of a step")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
