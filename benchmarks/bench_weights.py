"""Benchmark: touching-cell weight map on a large synthetic image.

Prints the time of :func:`napari_unet.annotations.weights.weight_map` on a 2048 x 2048 image with ~2000
touching cells (every pixel annotated: the worst case), the slow reference's time (one
full-image distance transform per cell, timed on ``--reference-cells`` cells and extrapolated),
the speed-up, and the largest absolute difference to the reference on a sub-image where the
reference runs in full.

    python benchmarks/bench_weights.py [--size 2048] [--radius 18] [--reference-cells 150]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy import ndimage as ndi

from napari_unet.annotations.targets import instances_to_annotations
from napari_unet.annotations.weights import _class_weight_image, _weight_map_reference, fiji_weight_map, weight_map
from napari_unet.samples import make_touching_cells


def _reference_seconds(ann: np.ndarray, n_cells: int, w0=10.0, sigma=5.0) -> tuple[float, int]:
    """Time the reference's per-cell loop on the first ``n_cells`` cells; extrapolate to all."""
    ids = np.unique(ann[ann >= 2])
    t0 = time.perf_counter()
    base = _class_weight_image(ann, "instances", "balanced")
    t_fixed = time.perf_counter() - t0
    d1 = np.full(ann.shape, np.inf)
    d2 = np.full(ann.shape, np.inf)
    sample = ids[:n_cells]
    t0 = time.perf_counter()
    for cell_id in sample:
        dist = ndi.distance_transform_edt(ann != cell_id)
        d2 = np.minimum(d2, np.maximum(d1, dist))
        d1 = np.minimum(d1, dist)
    per_cell = (time.perf_counter() - t0) / len(sample)
    t0 = time.perf_counter()
    bg = ann == 1
    total = d1 + d2
    base[bg] += (w0 * np.exp(-(total[bg] ** 2) / (2 * sigma * sigma))).astype(np.float32)
    t_fixed += time.perf_counter() - t0
    return t_fixed + per_cell * len(ids), len(ids)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--radius", type=float, default=18.0, help="mean cell radius (18 gives ~2000 cells at 2048)")
    parser.add_argument("--reference-cells", type=int, default=150)
    parser.add_argument("--check-size", type=int, default=768, help="sub-image compared in full with the reference")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    print(f"cores: {os.cpu_count()}, load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t0 = time.perf_counter()
    _, instances, _ = make_touching_cells((args.size, args.size), seed=0, mean_radius=args.radius, density=0.5)
    ann = instances_to_annotations(instances).astype(np.int32)
    n_cells = int(ann.max()) - 1
    print(f"synthetic {args.size}x{args.size}: {n_cells} cells, {(ann >= 2).mean():.0%} cell pixels "
          f"(made in {time.perf_counter() - t0:.1f} s)")

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fast = weight_map(ann, w0=10.0, sigma=5.0)
        times.append(time.perf_counter() - t0)
    best, median = min(times), float(np.median(times))
    print(f"weight_map: best {best:.3f} s, median {median:.3f} s over {args.repeats} runs "
          f"(max weight {fast.max():.2f})")
    t0 = time.perf_counter()
    fiji_weight_map(ann)
    print(f"fiji_weight_map: {time.perf_counter() - t0:.3f} s")

    ref_s, n = _reference_seconds(ann, args.reference_cells)
    print(f"reference (full-image EDT per cell): {ref_s:.1f} s extrapolated from {min(args.reference_cells, n)} "
          f"of {n} cells")
    print(f"speed-up: {ref_s / best:.0f}x (best), {ref_s / median:.0f}x (median)")

    c = args.check_size
    sub = ann[:c, :c]
    t0 = time.perf_counter()
    ref = _weight_map_reference(sub)
    t_ref = time.perf_counter() - t0
    diff = float(np.abs(weight_map(sub) - ref).max())
    print(f"max abs diff vs reference on {c}x{c} ({len(np.unique(sub[sub >= 2]))} cells, reference {t_ref:.1f} s): {diff:.2e}")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
