"""Where the Predict path's time goes (issue 37): the network, the flipped views, each stage of
the labels and the half-scale pass, on a 2048 x 2048 image and a stack.

A *fast* network is trained for ``--train-seconds`` on the shipped touching-cells sample (its
painted strokes), or loaded with ``--model``. Then, on a 2048 x 2048 image of the same generator
(another seed) and on a stack of 8 planes of 512 x 512:

1. one plain network pass (``predict_stack``, ``tta=1``): the yardstick;
2. two and four flipped views (``tta=2``, ``tta=4``);
3. ``to_labels`` with the model's options, and each of its stages (cProfile's cumulative time of
   the functions that make them: hole filling, distance transform, smoothing, seeds, connected
   components, watershed, the unsplit and join passes, the size filter), and the same labels made
   block by block on the cores there are (``labels.blocks.to_labels_in_blocks``, what the Predict
   path runs);
4. the half-scale pass for large cells (``segment`` with and without it);
5. the whole Predict path (``segment`` with the plugin's views, ``PLUGIN_TTA``; and with four) as a
   multiple of step 1, and what ``tta="auto"`` decided.

Megapixels per second are output pixels over seconds. Run::

    python benchmarks/bench_labels.py                     # 2048^2 and an 8 x 512^2 stack
    python benchmarks/bench_labels.py --size 1024 --planes 4 --train-seconds 20   # quicker
    python benchmarks/bench_labels.py --model my.unet

The suite's F1 before and after a change of the labels: ``python benchmarks/bench_quality.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import numpy as np

# (stage, the functions whose cumulative time makes it)
STAGES = [
    ("hole filling", ("_filled",)),
    ("distance transform", ("distance_to_background",)),
    ("smoothing", ("gaussian_filter",)),
    ("seeds (h-maxima)", ("dynamic_maxima",)),
    ("watershed", ("_flooded",)),
    ("unsplit small pieces", ("_unsplit",)),
    ("join where unsure", ("_joined_where_unsure",)),
    ("size filter", ("_size_filter",)),
]


def timed(fn, *args, repeat: int = 1, **kwargs):
    """(result, best seconds of ``repeat`` calls)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return result, best


def stage_seconds(fn, *args, **kwargs) -> tuple[float, dict]:
    """Total seconds of ``fn(*args)`` under cProfile and the cumulative seconds of each stage."""
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    fn(*args, **kwargs)
    profile.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(profile).stats
    found = {}
    for stage, names in STAGES:
        found[stage] = sum(cum for (_file, _line, name), (_cc, _nc, _tt, cum, _callers) in stats.items()
                           if name in names)
    return total, found


def get_model(args):
    from napari_unet import TrainConfig, load_model
    from napari_unet.samples import make_touching_cells
    from napari_unet.training.job import train

    if args.model:
        return load_model(args.model, device="cpu")
    image, _, annotations = make_touching_cells(seed=0)
    config = TrainConfig(preset="fast", iterations=None, time_limit_s=args.train_seconds, device="cpu")
    return train([image], [annotations], config=config, axes="YX").model


def _recording_engines() -> list:
    """The tile engines of the predictions to come, to read what ``tta="auto"`` decided."""
    import napari_unet.predict.tiling as tiling

    made = []
    if not getattr(tiling.TileEngine, "_recorded", False):
        class Engine(tiling.TileEngine):
            _recorded = True

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                Engine.made.append(self)

        Engine.made = made
        tiling.TileEngine = Engine
    else:
        tiling.TileEngine.made.clear()
        made = tiling.TileEngine.made
    return made


def report(name: str, data, axes: str, model, repeat: int) -> None:
    from napari_unet import to_labels
    from napari_unet.labels.blocks import label_workers, to_labels_in_blocks
    from napari_unet.labels.instances import label_options
    from napari_unet.labels.metrics import same_objects
    from napari_unet.labels.options import LabelOptions
    from napari_unet.labels.segment import segment
    from napari_unet.predict.tiling import predict_stack
    from napari_unet.predict.views import PLUGIN_TTA

    megapixels = data.size / 1e6
    print(f"\n## {name}: {data.shape} ({megapixels:.1f} MP)")
    plain, t_net = timed(predict_stack, model, data, axes=axes, device="cpu", tta=1, repeat=repeat)
    _, t_flips = timed(predict_stack, model, data, axes=axes, device="cpu", tta=4, repeat=repeat)
    _, t_two = timed(predict_stack, model, data, axes=axes, device="cpu", tta=2, repeat=repeat)
    options = label_options(model)
    labels, t_labels = timed(to_labels, plain, repeat=repeat, **options)
    blocks, t_blocks = timed(to_labels_in_blocks, plain, LabelOptions.of(options), repeat=repeat)
    total, stages = stage_seconds(to_labels, plain, **options)
    _, t_plain_path = timed(segment, model, data, axes=axes, device="cpu", tta=1, large_cells=False, repeat=repeat)
    _, t_half = timed(segment, model, data, axes=axes, device="cpu", tta=1, large_cells=True, repeat=repeat)
    _, t_four_path = timed(segment, model, data, axes=axes, device="cpu", tta=4, large_cells=True, repeat=repeat)
    made = _recording_engines()
    _, t_default = timed(segment, model, data, axes=axes, device="cpu", tta=PLUGIN_TTA, large_cells=True,
                         repeat=repeat)
    four = [bool(e.four_view_planes) for e in made[-2:]] if PLUGIN_TTA == "auto" else None

    def row(what, seconds):
        speed = f"{megapixels / seconds:.2f}" if seconds >= 1e-3 else "-"
        print(f"| {what} | {seconds:.2f} | {speed} | {seconds / t_net:.2f} |")

    print(f"{int(labels.max())} objects; labels options: { {k: v for k, v in options.items() if k != 'mode'} }; "
          f"the labels in blocks hold the same objects: {same_objects(labels, blocks)}")
    print("\n| step | seconds | MP/s | x one network pass |")
    print("| --- | --- | --- | --- |")
    row("one network pass (tta=1)", t_net)
    row("two flipped views (tta=2)", t_two)
    row("four flipped views (tta=4)", t_flips)
    row("to_labels, the model's options", t_labels)
    for stage, _names in STAGES:
        row(f"... {stage} (profiled)", stages[stage] * t_labels / max(total, 1e-9))
    row(f"the same labels in blocks on {label_workers()} threads (the Predict path's)", t_blocks)
    row("half-scale pass (segment with it - without it, tta=1)", t_half - t_plain_path)
    row("the whole Predict path with four views (tta=4, labels, half-scale pass)", t_four_path)
    row(f"**the whole Predict path** (tta={PLUGIN_TTA!r}, labels, half-scale pass)", t_default)
    if four is not None:
        print(f"\ntta='auto' took four views on: full scale {'yes' if four[0] else 'no'}, "
              f"half scale {'yes' if four[-1] else 'no'} (planes of the full scale with four views: "
              f"{len(made[-2].four_view_planes)} of {len(made[-2].disagreement)})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="side of the 2D image")
    parser.add_argument("--planes", type=int, default=8, help="planes of the 512 x 512 stack (0: none)")
    parser.add_argument("--model", default=None, help="a .unet file (default: train the fast net)")
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1, help="best of this many calls")
    args = parser.parse_args(argv)
    import torch

    from napari_unet.samples import make_touching_cells

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    model = get_model(args)
    image = make_touching_cells((args.size, args.size), seed=7)[0]
    report(f"2D {args.size}^2", image, "YX", model, args.repeat)
    if args.planes:
        stack = np.stack([make_touching_cells((512, 512), seed=10 + i)[0] for i in range(args.planes)])
        report(f"stack {args.planes} x 512^2", stack, "ZYX", model, args.repeat)
    print(f"\nload {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
