"""3D U-Net vs 2D U-Net + 3D labels, trained from three painted XY slices of a z-stack.

Measures, for the same sparse painting and the same CPU budget, the 3D objects of a z-stack found
by (2d) a "fast" 2D network trained on the painted planes, predicted plane by plane
(``predict_stack``) and labelled in 3D (``to_labels(..., three_d=True, spacing=voxel)``), and
(3d) a "fast3d" 3D network (Çiçek et al. 2016) trained on the same stack, predicted in 3D
(``predict_tiled``) and labelled the same way.

Data: ``nuclei``, the vendored 3D nuclei stack (``benchmarks/data/nuclei3d``) with its 3D labels;
``synthetic``, an anisotropic stack made by :func:`make_anisotropic_stack` (z-step four times the
pixel, objects touching along z, thin tilted rods, z-blur and noise), generated from
``--synthetic-seed`` (the evaluation seed: not the seeds the generator was written with).
Painting, as people paint a stack: three XY slices at a quarter, half and three quarters of the
objects' z extent, each with up to ten whole cells and background strokes (``sparse_annotations``
on the slice's ground truth, seeded by the run seed); both methods get the same painting.

Each network trains for ``--seconds`` of CPU time per thread (``Trainer.clock`` is
``process_time() / threads``, so other work on the machine does not shrink the budget), with
2 torch threads on the CPU. Reported per run: 3D object F1 at IoU 0.5 (``match_instances``),
precision, recall, objects found vs true, iterations, training it/s (per CPU second per thread),
prediction seconds (wall; CPU seconds of all threads in the JSON lines) and voxels/s of the
network pass and of the whole labels path; at the end, per data and method, the mean and worst F1
over seeds and the 3D-minus-2D difference.

Usage::

    python benchmarks/bench_unet3d.py --out benchmarks/results/DATE_unet3d_120s.jsonl
    python benchmarks/bench_unet3d.py --seeds 0 --seconds 10 --data nuclei --methods 2d
    python benchmarks/bench_unet3d.py --data synthetic --methods 3d --save /tmp/unet3d_runs  # keep models, outputs
    python benchmarks/bench_unet3d.py --prediction-speed 3 --data nuclei  # the network pass alone, 3 repeats
    python benchmarks/bench_unet3d.py --data nuclei --methods 3d --other-voxel z2,xy2  # another z-step, binning
    python benchmarks/bench_unet3d.py --data synthetic --methods 3d --painting dense --seeds 0 --seconds 1200

Other paintings (``--painting``, :data:`PAINTINGS`): XZ planes painted in napari's transposed
view, cells painted through consecutive slices (``xy+block``), and ``dense``, every voxel of the
stack labelled from its ground truth: no painting anyone does, but the ceiling of a network on the
very stack it is scored on. On the synthetic stack each run also reports how many objects of each
kind (stacked pairs, rods, single nuclei) it finds, and the stack's intensity along z through the
faces where two objects stacked along z touch.

``--other-voxel z2,zhalf,xy2`` also scores each trained 3D network on the sample as acquired with
another voxel: ``z2`` twice the z-step, ``zhalf`` half of it, ``xy2`` 2 x 2 binned pixels (a
camera's binning). The synthetic scene is generated again on that grid; the nuclei stack is
subsampled or binned (:func:`other_voxel`). Each is predicted twice: with its own voxel size
(resampled to the network's voxel and back) and as it is (the network's grid taken for the
stack's, what a 3D network did before it resampled).

``--prediction-speed N`` trains nothing: it times N network passes over each stack of the
networks training builds for it (*fast3d* with the stack's voxel size, *fast* plane by plane;
freshly initialised: the arithmetic is that of a trained one), with the default tile plan, and
prints the tiles, seconds, voxels/s and the rise of the process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi

import napari_unet as nu
from napari_unet.labels.instances import label_options
from napari_unet.labels.metrics import match_instances
from napari_unet.samples import sparse_annotations

THREADS = 2
NUCLEI = Path(__file__).resolve().parent / "data" / "nuclei3d"
NUCLEI_VOXEL = (0.29, 0.26, 0.26)  # µm (z, y, x)
SYNTHETIC_SEED = 20270  # the evaluation stack; the generator was written looking at other seeds only


def make_anisotropic_stack(seed: int, shape=(32, 192, 192), voxel=(1.0, 0.25, 0.25), n_single=56, n_pairs=16,
                           n_rods=16, photons=60.0, read_noise=0.05):
    """A seeded synthetic widefield-like z-stack where single slices mislead; returns
    ``(image uint16, labels int32)``, labels 1..N one per 3D object.

    Objects (sizes in µm): ``n_single`` nuclei, ellipsoids of semi-axes 2.2-3.4 (y, x, random
    in-plane angle) by 1.8-3.0 (z); ``n_pairs`` pairs of nuclei (z semi-axes 1.8-2.6, y, x 2.4-3.4)
    stacked along z at nearly the same (y, x), their centres 0.75 of their summed z semi-axes apart,
    so that they touch over a wide flat interface (the slices near it show one blob); ``n_rods`` thin rods (capsules of radius 0.6-0.9, length 8-14) tilted 20-50 degrees out
    of the XY plane, so each crosses several slices at an angle. A voxel belongs to the object it
    lies deepest in; objects overlapping others by more than 5 % (10 % for a stacked partner) are
    redrawn. Intensity: brightness 0.4-1 per object, dimmer towards its surface, textured; blurred
    by a PSF elongated along z (sigma 1.0 µm in z, 0.3 in y, x) plus out-of-focus haze (a quarter of
    the light, sigma 3 µm in z, 1 in y, x); Poisson noise at ``photons`` per unit + Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    voxel = np.asarray(voxel, float)
    extent = np.asarray(shape) * voxel
    grid = [np.arange(n) * v for n, v in zip(shape, voxel)]
    depth = np.full(shape, np.inf, np.float32)
    labels = np.zeros(shape, np.int32)
    profile = np.zeros(shape, np.float32)

    def ellipsoid(c, axes_um, angle):
        def d(p):
            u = p[1] * np.cos(angle) + p[2] * np.sin(angle)
            v = -p[1] * np.sin(angle) + p[2] * np.cos(angle)
            return (p[0] / axes_um[0]) ** 2 + (u / axes_um[1]) ** 2 + (v / axes_um[2]) ** 2
        return c, float(max(axes_um)), d

    def rod(c, radius, length, tilt, azimuth):
        axis = np.array([np.sin(tilt), np.cos(tilt) * np.sin(azimuth), np.cos(tilt) * np.cos(azimuth)])

        def d(p):
            t = np.clip(sum(p[i] * axis[i] for i in range(3)), -length / 2, length / 2)
            return sum((p[i] - t * axis[i]) ** 2 for i in range(3)) / radius**2
        return c, length / 2 + radius, d

    def draw(obj, partner=0, max_overlap=0.05):
        c, reach, dist = obj
        box = [slice(max(0, int((c[i] - reach) / voxel[i])), min(shape[i], int((c[i] + reach) / voxel[i]) + 2))
               for i in range(3)]
        p = np.meshgrid(*[grid[i][box[i]] - c[i] for i in range(3)], indexing="ij")
        d = dist(p).astype(np.float32)
        inside = d < 1
        if inside.sum() < 20:
            return 0
        others = labels[tuple(box)][inside]
        if np.mean((others > 0) & (others != partner)) > 0.05 or (partner and np.mean(others == partner) > max_overlap):
            return 0
        new = int(labels.max()) + 1
        mine = inside & (d < depth[tuple(box)])
        depth[tuple(box)][mine] = d[mine]
        labels[tuple(box)][mine] = new
        profile[tuple(box)][mine] = rng.uniform(0.4, 1.0) * (1 - 0.45 * d[mine])
        return new

    def centre(margin_z=0.0):
        return np.array([rng.uniform(margin_z, extent[0] - margin_z), *rng.uniform(0, extent[1:])])

    for _ in range(200 * n_pairs):
        if n_pairs == 0:
            break
        c, az = centre(3.0), rng.uniform(0, np.pi)
        za, zb = rng.uniform(1.8, 2.6, 2)
        xy = rng.uniform(2.4, 3.4, 2)
        before = [a.copy() for a in (labels, depth, profile)]
        first = draw(ellipsoid(c, (za, *xy), az))
        if first:
            c2 = c + np.array([0.75 * (za + zb), *rng.normal(0, 0.4, 2)])
            if draw(ellipsoid(c2, (zb, *(xy * rng.uniform(0.85, 1.15, 2))), az + rng.normal(0, 0.3)), first, 0.1):
                n_pairs -= 1
            else:  # the pair or nothing
                for a, b in zip((labels, depth, profile), before):
                    np.copyto(a, b)
    for _ in range(200 * n_rods):
        if n_rods == 0:
            break
        n_rods -= bool(draw(rod(centre(), rng.uniform(0.6, 0.9), rng.uniform(8, 14), np.radians(rng.uniform(20, 50)),
                                rng.uniform(0, 2 * np.pi))))
    for _ in range(200 * n_single):
        if n_single == 0:
            break
        n_single -= bool(draw(ellipsoid(centre(), (rng.uniform(1.8, 3.0), *rng.uniform(2.2, 3.4, 2)),
                                        rng.uniform(0, np.pi))))
    texture = ndi.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), (0.5, 2, 2))
    signal = profile * (1 + 0.15 * texture) + 0.08
    sharp = ndi.gaussian_filter(signal, np.array([1.0, 0.3, 0.3]) / voxel)
    haze = ndi.gaussian_filter(signal, np.array([3.0, 1.0, 1.0]) / voxel)
    light = 0.75 * sharp + 0.25 * haze
    noisy = rng.poisson(np.clip(light, 0, None) * photons) / photons + rng.normal(0, read_noise, shape)
    image = np.clip(noisy * 3000 + 300, 0, 65535).astype(np.uint16)
    ids = np.unique(labels[labels > 0])
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, ids.size + 1)
    return image, lut[labels]


#: the synthetic stack's objects by kind, in the order :func:`make_anisotropic_stack` draws them (ids from 1)
SYNTHETIC_KINDS = (("pairs", 32), ("rods", 16), ("singles", 56))


def found_by_kind(truth: np.ndarray, labels: np.ndarray) -> dict:
    """Of each kind of object of the synthetic stack, how many a prediction of IoU >= 0.5 finds."""
    best = np.zeros(int(truth.max()) + 1)
    both = truth.astype(np.int64) * (int(labels.max()) + 1) + labels
    pairs, overlap = np.unique(both[(truth > 0) & (labels > 0)], return_counts=True)
    t, p = pairs // (int(labels.max()) + 1), pairs % (int(labels.max()) + 1)
    sizes_t, sizes_p = np.bincount(truth.ravel()), np.bincount(labels.ravel())
    np.maximum.at(best, t, overlap / (sizes_t[t] + sizes_p[p] - overlap))
    out, start = {}, 1
    for kind, n in SYNTHETIC_KINDS:
        out[kind] = f"{int((best[start:start + n] >= 0.5).sum())}/{n}"
        start += n
    return out


def unreferenced_at_edge(truth: np.ndarray, labels: np.ndarray) -> int:
    """Objects found that touch the stack's Y or X border and lie (90 % or more) outside every
    reference object: on the nuclei stack, parts of nuclei cut by the field's edge that its
    reference leaves out (benchmarks/README.md)."""
    count = 0
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == i
        edge = box[1].start == 0 or box[2].start == 0 or box[1].stop == labels.shape[1] or box[2].stop == labels.shape[2]
        count += bool(edge and np.count_nonzero(truth[box][own]) < 0.1 * np.count_nonzero(own))
    return count


def interface_profile(stack: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean intensity along z through the faces where two objects stacked along z touch, from three
    slices below the face to three above it (the face lies between the 4th and 5th value), each pair
    scaled to its brightest value: a dip in the middle is what would tell the two apart."""
    lower, upper = truth[:-1], truth[1:]
    profiles = []
    for a in np.unique(lower[(lower > 0) & (upper > 0) & (lower != upper)]):
        z, y, x = np.nonzero((lower == a) & (upper > 0) & (upper != a))
        values = np.array([stack[np.clip(z + k, 0, stack.shape[0] - 1), y, x].astype(float).mean() for k in range(-3, 5)])
        profiles.append(values / values.max())
    return np.mean(profiles, axis=0) if profiles else np.zeros(8)


def load(name: str, synthetic_seed: int):
    """``(stack, truth, voxel)`` of a data set."""
    if name == "nuclei":
        stack = tifffile.imread(NUCLEI / "nuclei.tif")
        truth = tifffile.imread(NUCLEI / "nuclei_label.tif").astype(np.int32)
        return stack, truth, NUCLEI_VOXEL
    if name == "synthetic":
        return (*make_anisotropic_stack(synthetic_seed), (1.0, 0.25, 0.25))
    raise SystemExit(f"unknown data {name!r}: choose nuclei or synthetic")


#: the paintings: the fractions of the objects' z extent of the XY slices, and of their y extent of
#: the XZ planes (painted as in napari's transposed view)
PAINTINGS = {
    "xy": ((0.25, 0.5, 0.75), ()),
    "xz": ((0.25, 0.75), (0.5,)),
    "xy+xz2": ((0.25, 0.5, 0.75), (1 / 3, 2 / 3)),
    "xy+block": ((0.25, 0.75), ()),
    "dense": ((), ()),  # every voxel: a ceiling, no painting anyone does
}
#: the painted volumes: (fraction of the objects' z extent at the block's middle, slices, cells painted through it)
BLOCKS = {"xy+block": (0.5, 4, 6)}


def paint(truth: np.ndarray, seed: int, n_cells: int = 10, fraction: float = 0.02, painting: str = "xy"):
    """Annotations of the XY slices and XZ planes of ``painting`` (:data:`PAINTINGS`): up to
    ``n_cells`` whole cells and background strokes each, ids unique over the stack. ``xy``: three
    XY slices (a quarter, half and three quarters of the objects' z extent); ``xz``: the XY slices at
    a quarter and three quarters, and one XZ plane at half the objects' y extent; ``xy+xz2``: the
    three XY slices and two XZ planes, at a third and two thirds of the objects' y extent;
    ``xy+block``: the XY slices at a quarter and three quarters, and a block of four consecutive
    slices at half the objects' z extent (:data:`BLOCKS`), painted as people paint cells through a
    few slices: six cells of the block's middle slice (touching pairs first), each painted in every
    slice of the block it reaches under the same id, and background strokes in each slice. Each plane
    is painted with ids of its own, after the ones before, as in napari: an XZ plane crossing a
    painted XY slice overwrites the slice's voxels on their common row. Returns the annotations, what
    was painted, and the annotations of the XY slices alone (before any XZ plane crossed them)."""
    if painting == "dense":
        annotations = np.where(truth > 0, truth + 1, 1).astype(np.uint16)
        return annotations, {"slices": "all", "cells": int(truth.max()), "stroke_pixels": int((truth == 0).sum())}, annotations
    zq, yq = PAINTINGS[painting]
    zs = np.flatnonzero((truth > 0).any(axis=(1, 2)))
    ys = np.flatnonzero((truth > 0).any(axis=(0, 2)))
    slices = [int(round(zs[0] + q * (zs[-1] - zs[0]))) for q in zq]
    xz = [int(round(ys[0] + q * (ys[-1] - ys[0]))) for q in yq]
    annotations = np.zeros(truth.shape, np.uint16)
    cells, strokes = [], []
    planes = [(z, (z,)) for z in slices] + [(1000 + y, (slice(None), y)) for y in xz]
    xy_only = annotations
    for key, index in planes:
        if key >= 1000 and xy_only is annotations:  # the XY slices alone, before an XZ plane crosses them
            xy_only = annotations.copy()
        plane = sparse_annotations(truth[index], fraction=fraction, n_cells=n_cells, seed=seed * 1000 + key)
        offset = max(int(annotations.max()) - 1, 0)
        current = annotations[index]
        annotations[index] = np.where(plane > 1, plane + offset, np.where(plane == 1, 1, current))
        cells.append(int(np.unique(plane[plane > 1]).size))
        strokes.append(int((plane == 1).sum()))
    if painting in BLOCKS:  # a painted volume: the same cells through consecutive slices
        q, depth, block_cells = BLOCKS[painting]
        middle = int(round(zs[0] + q * (zs[-1] - zs[0])))
        block = list(range(middle - (depth - 1) // 2, middle - (depth - 1) // 2 + depth))
        chosen = sparse_annotations(truth[middle], fraction=fraction, n_cells=block_cells, seed=seed * 1000 + 500)
        ids = np.unique(truth[middle][chosen > 1])
        lut = np.zeros(int(truth.max()) + 1, np.uint16)
        lut[ids] = np.arange(ids.size) + max(int(annotations.max()) + 1, 2)
        for z in block:
            strokes_z = sparse_annotations(truth[z], fraction=fraction, n_cells=0, seed=seed * 1000 + 600 + z) == 1
            annotations[z] = np.where(lut[truth[z]] > 0, lut[truth[z]], np.where(strokes_z, 1, annotations[z]))
            cells.append(int(np.unique(truth[z][lut[truth[z]] > 0]).size))
            strokes.append(int(strokes_z.sum()))
        slices = slices + block
    painted = {"slices": slices, "cells": cells, "stroke_pixels": strokes}
    if xz:
        painted["xz_planes_y"] = xz
    return annotations, painted, xy_only


def run(data: str, method: str, seed: int, seconds: float, stack, truth, voxel, annotations, save=None,
        ttas=(1,), other_voxels=(), synthetic_seed=SYNTHETIC_SEED, **weights) -> list[dict]:
    """Train one network; one row per flipped-view setting in ``ttas`` its prediction is scored with."""
    preset = {"2d": "fast", "3d": "fast3d"}[method]
    config = nu.TrainConfig(preset=preset, time_limit_s=seconds, iterations=None, pixel_size=voxel, seed=seed,
                            device="cpu", **weights)
    trainer = nu.Trainer([stack], [annotations], config=config, axes="ZYX")
    trainer.clock = lambda: time.process_time() / THREADS
    cpu0, wall0 = trainer.clock(), time.perf_counter()
    for _event in trainer.run():
        pass
    train_cpu, train_wall = trainer.clock() - cpu0, time.perf_counter() - wall0
    model = trainer.model
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        nu.save_model(model, save / f"{data}_{method}_s{seed}_{int(seconds)}s.unet")
    rows = [score(data, method, seed, seconds, stack, truth, voxel, trainer, train_cpu, train_wall, tta, save)
            for tta in ttas]
    if other_voxels and method == "3d":
        rows[0]["other_voxels"] = score_other_voxels(data, model, stack, truth, voxel, other_voxels, synthetic_seed)
    return rows


def score(data, method, seed, seconds, stack, truth, voxel, trainer, train_cpu, train_wall, tta, save) -> dict:
    """Predict ``stack`` with the trained network (``tta`` flipped views), label it and score it."""
    model = trainer.model
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "2d":
        probabilities = nu.predict_stack(model, stack, axes="ZYX", device="cpu", tta=tta)
    else:
        probabilities = nu.predict_tiled(model, stack, device="cpu", tta=tta)
    network_s, network_cpu = time.perf_counter() - t0, time.process_time() - c0
    options = {**label_options(model, pixel_size=voxel[1:]), "three_d": True, "spacing": voxel}
    labels = nu.to_labels(probabilities, **options)
    total_s, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    m = match_instances(truth, labels)
    if save is not None:  # what a later look at the errors needs: its probabilities and labels
        stem = save / (f"{data}_{method}_s{seed}_{int(seconds)}s" + ("" if tta == 1 else f"_tta{tta}"))
        np.save(f"{stem}_probabilities.npy", probabilities.astype(np.float16))
        np.save(f"{stem}_labels.npy", labels)
    return {
        "data": data, "method": method, "tta": tta, "preset": {"2d": "fast", "3d": "fast3d"}[method], "seed": seed, "budget_cpu_s": seconds, "threads": THREADS,
        "f1": m["f1"], "precision": m["precision"], "recall": m["recall"], "n_pred": m["n_pred"], "n_true": m["n_gt"],
        "mean_matched_iou": m["mean_matched_iou"], "iterations": trainer.iteration,
        "found_by_kind": found_by_kind(truth, labels) if data == "synthetic" else None,
        "unreferenced_at_edge": unreferenced_at_edge(truth, labels),
        "kept": trainer.kept, "kept_iteration": trainer.best.kept_iteration,
        "it_per_s": trainer.iteration / max(train_cpu, 1e-9), "train_cpu_s": train_cpu, "train_wall_s": train_wall,
        "network_s": network_s, "network_voxels_per_s": stack.size / network_s, "labels_path_s": total_s,
        "labels_path_voxels_per_s": stack.size / total_s, "network_cpu_s": network_cpu, "labels_path_cpu_s": total_cpu,
        "cell_diameter": options.get("cell_diameter"),
        "voxel_um": list(voxel), "shape": list(stack.shape),
    }


def other_voxel(data: str, stack: np.ndarray, truth: np.ndarray, voxel, kind: str, synthetic_seed: int):
    """``(stack, truth, voxel)`` of the same sample acquired with another voxel: ``z2`` twice the
    z-step, ``zhalf`` half of it, ``xy2`` 2 x 2 binned pixels. The synthetic scene is generated
    again on that grid (same seed, same extent); the nuclei stack is subsampled (``z2``: every
    second plane) or binned (``xy2``: the mean; the reference takes every second pixel)."""
    scale = {"z2": (2.0, 1.0, 1.0), "zhalf": (0.5, 1.0, 1.0), "xy2": (1.0, 2.0, 2.0)}[kind]
    size = tuple(v * f for v, f in zip(voxel, scale))
    if data == "synthetic":
        shape = tuple(int(round(n / f)) for n, f in zip(stack.shape, scale))
        return (*make_anisotropic_stack(synthetic_seed, shape=shape, voxel=size), size)
    if kind == "z2":
        return stack[::2], truth[::2], size
    if kind == "xy2":
        z, y, x = (n - n % 2 for n in stack.shape)
        binned = stack[:z, :y, :x].astype(np.float32).reshape(z, y // 2, 2, x // 2, 2).mean(axis=(2, 4))
        return binned, truth[:z, :y:2, :x:2], size
    raise SystemExit(f"--other-voxel {kind}: the nuclei stack has no finer z-step (z2 or xy2)")


def score_other_voxels(data, model, stack, truth, voxel, kinds, synthetic_seed) -> dict:
    """3D object F1 of a 3D network on the sample acquired with each voxel of ``kinds``: predicted
    with its voxel size (resampled) and as it is."""
    out = {}
    for kind in kinds:
        other, reference, size = other_voxel(data, stack, truth, voxel, kind, synthetic_seed)
        options = {**label_options(model, pixel_size=size[1:]), "three_d": True, "spacing": size}
        out[kind] = {"voxel_um": list(size), "shape": list(other.shape)}
        for name, pixel_size in (("resampled", size), ("as_is", None)):
            t0 = time.perf_counter()
            probabilities = nu.predict_tiled(model, other, device="cpu", pixel_size=pixel_size)
            labels = nu.to_labels(probabilities, **options)
            m = match_instances(reference, labels)
            out[kind][name] = {"f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
                               "n_pred": m["n_pred"], "n_true": m["n_gt"], "seconds": time.perf_counter() - t0,
                               "found_by_kind": found_by_kind(reference, labels) if data == "synthetic" else None}
    return out


def summary(rows: list[dict]) -> None:
    print(f"\n{'data':<10} {'method':<6} {'F1 mean':>7} {'worst':>6} {'prec':>5} {'rec':>5} {'found/true':>11} "
          f"{'iter':>6} {'it/s':>5} {'net vox/s':>10} {'labels vox/s':>12}")
    means: dict[tuple, dict] = {}
    for r in rows:
        r.setdefault("variant", r["method"] if r.get("tta", 1) == 1 else f"{r['method']} tta={r['tta']}")
    for data in dict.fromkeys(r["data"] for r in rows):
        for method in dict.fromkeys(r["variant"] for r in rows):
            sel = [r for r in rows if r["data"] == data and r["variant"] == method]
            if not sel:
                continue
            mean = {k: float(np.mean([r[k] for r in sel])) for k in (
                "f1", "precision", "recall", "n_pred", "n_true", "iterations", "it_per_s", "network_voxels_per_s",
                "labels_path_voxels_per_s")}
            mean["worst"] = min(r["f1"] for r in sel)
            mean["by_seed"] = {r["seed"]: r["f1"] for r in sel}
            means[data, method] = mean
            print(f"{data:<10} {method:<6} {mean['f1']:7.3f} {mean['worst']:6.3f} {mean['precision']:5.2f} "
                  f"{mean['recall']:5.2f} {mean['n_pred']:5.1f}/{mean['n_true']:<5.0f} {mean['iterations']:6.0f} "
                  f"{mean['it_per_s']:5.2f} {mean['network_voxels_per_s']:10.3g} "
                  f"{mean['labels_path_voxels_per_s']:12.3g}")
    for data in dict.fromkeys(r["data"] for r in rows):
        if (data, "2d") in means and (data, "3d") in means:
            a, b = means[data, "2d"], means[data, "3d"]
            paired = [b["by_seed"][s] - a["by_seed"][s] for s in a["by_seed"] if s in b["by_seed"]]
            print(f"{data}: 3D - 2D: mean F1 {b['f1'] - a['f1']:+.3f}, worst F1 {b['worst'] - a['worst']:+.3f}, "
                  f"per seed {', '.join(f'{d:+.3f}' for d in paired)}")


def prediction_speed(data: str, stack, voxel, repeats: int, methods=("3d", "2d")) -> None:
    """Time the network pass of both methods over ``stack`` (``--prediction-speed``)."""
    import resource

    from napari_unet.config import anisotropic_pools, model_preset
    from napari_unet.predict.volume import choose_volume_tile

    torch.manual_seed(0)
    nets = {"3d": nu.UNet.from_config(model_preset("fast3d", xy_only_pools=anisotropic_pools(voxel, 3))).eval(),
            "2d": nu.UNet.from_config(model_preset("fast")).eval()}
    small = stack[:8, :64, :64]
    for method, net in nets.items():
        if method not in methods:
            continue
        run = (lambda x, net=net: nu.predict_tiled(net, x, device="cpu")) if method == "3d" else \
              (lambda x, net=net: nu.predict_stack(net, x, axes="ZYX", device="cpu"))
        run(small)  # warm up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(stack)
            seconds.append(time.perf_counter() - t0)
        rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        tiles = f"tile {choose_volume_tile(net, stack.shape, device='cpu')}, " if method == "3d" else ""
        print(f"  {data} {method} network pass: {tiles}{', '.join(f'{v:.1f}' for v in seconds)} s "
              f"(best {stack.size / min(seconds):.3g} vox/s), peak memory +{rise:.0f} MB", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seconds", type=float, default=120.0, help="CPU seconds per thread of training per run")
    parser.add_argument("--data", default="nuclei,synthetic")
    parser.add_argument("--methods", default="2d,3d")
    parser.add_argument("--synthetic-seed", type=int, default=SYNTHETIC_SEED, help="seed of the synthetic stack")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per run to this file")
    parser.add_argument("--save", type=Path, default=None,
                        help="keep each run's model, probabilities (float16) and labels in this folder")
    parser.add_argument("--painting", choices=sorted(PAINTINGS), default="xy",
                        help="xy: three XY slices (default); xz: two XY slices and one XZ plane; xy+xz2: three XY "
                             "slices and two XZ planes (the 2D network gets the XY slices only: it cannot learn "
                             "from an XZ plane); xy+block: two XY slices and six cells painted through four "
                             "consecutive slices (both networks get it all); dense: every voxel (a ceiling)")
    parser.add_argument("--keep-model", choices=["best", "last"], default=None,
                        help="the weights a run keeps (default: the network's; TrainConfig.keep_model)")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="Polyak averaging of the weights (default: the network's; 0: off; TrainConfig.ema_decay)")
    parser.add_argument("--prediction-speed", type=int, default=0, metavar="N",
                        help="train nothing: time N network passes of both methods over each stack")
    parser.add_argument("--tta", default="1",
                        help="flipped views each trained network is predicted with, e.g. 1,auto: one row per value "
                             "(the API's default is 1; the widgets' is auto)")
    parser.add_argument("--other-voxel", default="",
                        help="also score each 3D network on the sample with another voxel: z2 (twice the z-step), "
                             "zhalf (half of it; synthetic only), xy2 (2 x 2 binning), e.g. z2,xy2; predicted with "
                             "the sample's voxel size and as it is")
    args = parser.parse_args(argv)
    other_voxels = [k for k in args.other_voxel.split(",") if k]
    if set(other_voxels) - {"z2", "zhalf", "xy2"}:
        parser.error("--other-voxel: z2, zhalf, xy2")
    ttas = [v if v == "auto" else int(v) for v in args.tta.split(",")]
    weights = {k: v for k, v in (("keep_model", args.keep_model), ("ema_decay", args.ema_decay)) if v is not None}
    torch.set_num_threads(THREADS)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    if set(methods) - {"2d", "3d"}:
        parser.error("--methods: 2d, 3d")
    rows = []
    for data in args.data.split(","):
        stack, truth, voxel = load(data, args.synthetic_seed)
        print(f"{data}: {stack.shape} voxels of {voxel} µm, {int(truth.max())} objects", flush=True)
        if data == "synthetic":
            print("  intensity along z through the faces of objects stacked along z (face after the 4th): "
                  + " ".join(f"{v:.3f}" for v in interface_profile(stack, truth)), flush=True)
        if args.prediction_speed:
            prediction_speed(data, stack, voxel, args.prediction_speed, methods)
            continue
        for seed in seeds:
            annotations, painted, xy_only = paint(truth, seed, painting=args.painting)
            print(f"  seed {seed}: painted slices {painted['slices']}, cells {painted['cells']}, "
                  f"stroke pixels {painted['stroke_pixels']}" + (f", XZ planes at y = {painted['xz_planes_y']}"
                                                                 if "xz_planes_y" in painted else ""), flush=True)
            for method in methods:
                given = xy_only if method == "2d" else annotations
                for row in run(data, method, seed, args.seconds, stack, truth, voxel, given, save=args.save,
                               ttas=ttas, other_voxels=other_voxels, synthetic_seed=args.synthetic_seed,
                               **weights):
                    row.update({"weights_options": weights, "painting": painted,
                                "synthetic_seed": args.synthetic_seed if data == "synthetic" else None})
                    rows.append(row)
                    report(row, args.out)
    if rows:
        summary(rows)
    return 0


def report(row: dict, out) -> None:
    """Print one run's figures; append its JSON line to ``out``."""
    views = "" if row["tta"] == 1 else f" tta={row['tta']}"
    print(f"  {row['data']} {row['method']}{views} seed {row['seed']}: F1 {row['f1']:.3f} (P {row['precision']:.2f}, "
          f"R {row['recall']:.2f}), {row['n_pred']}/{row['n_true']} objects; {row['iterations']} it "
          f"(kept: {row['kept']}, iteration {row['kept_iteration']}), "
          f"{row['it_per_s']:.2f} it/s; network {row['network_s']:.1f} s "
          f"({row['network_voxels_per_s']:.3g} vox/s), labels path {row['labels_path_s']:.1f} s "
          f"({row['labels_path_voxels_per_s']:.3g} vox/s)"
          + (f"; found by kind {row['found_by_kind']}" if row.get("found_by_kind") else "")
          + f"; {row['unreferenced_at_edge']} found at the edge outside the reference", flush=True)
    for kind, got in (row.get("other_voxels") or {}).items():
        print(f"    voxel {kind} {tuple(got['voxel_um'])} µm, {tuple(got['shape'])}: F1 resampled "
              f"{got['resampled']['f1']:.3f} ({got['resampled']['n_pred']}/{got['resampled']['n_true']}), "
              f"as it is {got['as_is']['f1']:.3f} ({got['as_is']['n_pred']}/{got['as_is']['n_true']})", flush=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
