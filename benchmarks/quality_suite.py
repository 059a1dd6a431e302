"""The image suite and the painting simulator of ``bench_quality.py`` (plain numpy / scipy).

Real images: every labelled microscopy image we could vendor (``benchmarks/data/``, each with
its license and attribution) plus well-separated planes of the shipped nuclei volume.
Synthetic images: one generator per kind of difficulty a microscopist meets and no package ships
labelled data for (phase-contrast halos, DIC relief, dense clumps of touching cells, low
signal-to-noise, uneven illumination, a few saturated objects, mixed cell sizes, membrane-stained
tissue). Each returns ``(image, instances)``: a uint16 camera-like image and a complete instance
mask (0 = background, 1..N = cells).

The painting simulator paints the way people paint, not the way that helps the method:

* ``"a"``: 10 complete cells (at most a quarter of the image's cells, at least 3) painted as instances (touching pairs first, cells cut by the image
  border left out) and 8 quick straight background strokes, 3 px wide, drawn in open space at least
  4 px from any cell (no stroke hugs a cell);
* ``"b"``: the same with 5 cells;
* ``"c"``: style ``"a"``, then a correction round (:func:`paint_corrections`): the 3 worst errors
  of a first prediction painted (a missed or merged cell painted complete, a false object painted
  over as background), training continues.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

DATA = Path(__file__).resolve().parent / "data"

STYLES = {"a": 10, "b": 5, "c": 10}
STROKES = 8
STROKE_WIDTH = 3
STROKE_MARGIN = 4


# ----------------------------------------------------------------------------- cell layouts


def cell_layout(shape, rng, *, radius=(8.0, 14.0), density=0.4, touching=0.5, irregular=0.12, max_cells=5000):
    """Instance mask of irregular, partly touching cells.

    Centres are drawn at random; with probability ``touching`` a new cell is put right against an
    existing one (so the two share a border). A pixel belongs to the cell whose (perturbed
    elliptical) shape it lies deepest in. Returns ``(instances int32, depth float32)`` where
    ``depth`` is 0 at a cell's centre and 1 at its border (inf outside cells).
    """
    h, w = shape
    centres: list[tuple[float, float]] = []
    radii: list[float] = []
    target = density * h * w
    area = 0.0
    tries = 0
    while area < target and tries < 30000 and len(centres) < max_cells:
        tries += 1
        r = float(rng.uniform(*radius))
        if centres and rng.random() < touching:
            k = int(rng.integers(len(centres)))
            angle = rng.uniform(0, 2 * np.pi)
            dist = (radii[k] + r) * rng.uniform(0.85, 0.98)
            y, x = centres[k][0] + dist * np.sin(angle), centres[k][1] + dist * np.cos(angle)
        else:
            y, x = rng.uniform(0, h), rng.uniform(0, w)
        if not (0 <= y < h and 0 <= x < w):
            continue
        if centres:
            c = np.asarray(centres)
            if np.any((c[:, 0] - y) ** 2 + (c[:, 1] - x) ** 2 < (0.8 * (r + np.asarray(radii))) ** 2):
                continue
        centres.append((y, x))
        radii.append(r)
        area += np.pi * r * r
    depth = np.full(shape, np.inf, np.float32)
    instances = np.zeros(shape, np.int32)
    for i, ((cy, cx), r) in enumerate(zip(centres, radii)):
        ecc = rng.uniform(0.75, 1.3)
        a, b = r * ecc, r / ecc
        theta = rng.uniform(0, np.pi)
        harmonics = [(k, rng.normal(0, irregular / k), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4, 5)]
        ext = int(np.ceil(max(a, b) * (1 + 2 * irregular))) + 2
        y0, y1 = max(0, int(cy) - ext), min(h, int(cy) + ext + 1)
        x0, x1 = max(0, int(cx) - ext), min(w, int(cx) + ext + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        phi = np.arctan2(v, u)
        wobble = 1.0 + sum(amp * np.cos(k * phi + ph) for k, amp, ph in harmonics)
        d = (np.sqrt((u / a) ** 2 + (v / b) ** 2) / np.maximum(wobble, 0.5)).astype(np.float32)
        inside = (d < 1.0) & (d < depth[y0:y1, x0:x1])
        depth[y0:y1, x0:x1][inside] = d[inside]
        instances[y0:y1, x0:x1][inside] = i + 1
    # drop fragments (a cell cut into pieces by its neighbours keeps its largest piece)
    instances = _largest_pieces(instances)
    depth[instances == 0] = np.inf
    return _relabel(instances), depth


def _largest_pieces(instances):
    out = np.zeros_like(instances)
    objects = ndi.find_objects(instances)
    for i, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        mask = instances[sl] == i
        lab, n = ndi.label(mask)
        if n > 1:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            mask = lab == int(np.argmax(sizes))
        if mask.sum() >= 12:
            out[sl][mask] = i
    return out


def _relabel(labels):
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]


def _camera(signal, rng, *, photons=300.0, read_noise=0.02, offset=200.0, gain=3000.0, saturate=None):
    noisy = rng.poisson(np.clip(signal, 0, None) * photons).astype(np.float32) / photons
    noisy += rng.normal(0, read_noise, signal.shape).astype(np.float32)
    image = noisy * gain + offset
    top = 65535.0 if saturate is None else saturate
    return np.clip(image, 0, top).astype(np.uint16)


def _texture(shape, rng, sigma=2.0):
    t = ndi.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), sigma)
    return t / max(float(t.std()), 1e-6)


def _fluorescence(instances, depth, rng, *, brightness=(0.45, 1.0), background=0.08, blur=1.2):
    n = int(instances.max())
    level = np.concatenate([[0.0], rng.uniform(*brightness, size=n)]).astype(np.float32)
    profile = np.where(instances > 0, level[instances] * (1.0 - 0.4 * np.minimum(depth, 1.0) ** 2), 0).astype(np.float32)
    signal = profile * (1.0 + 0.15 * _texture(instances.shape, rng)) + background
    return ndi.gaussian_filter(signal, blur)


# ----------------------------------------------------------------------------- modalities


def dense_clumps(shape=(384, 384), seed=0):
    """Fluorescent nuclei packed into clumps: most cells touch two or more neighbours."""
    rng = np.random.default_rng(seed)
    inst, depth = cell_layout(shape, rng, radius=(8, 13), density=0.55, touching=0.9)
    return _camera(_fluorescence(inst, depth, rng), rng), inst


def low_snr(shape=(384, 384), seed=0):
    """Dim nuclei in shot noise: ~8 photons at the brightest cell."""
    rng = np.random.default_rng(seed)
    inst, depth = cell_layout(shape, rng, radius=(8, 13), density=0.35, touching=0.5)
    signal = _fluorescence(inst, depth, rng, brightness=(0.35, 1.0), background=0.15, blur=1.0)
    return _camera(signal, rng, photons=8.0, read_noise=0.05), inst


def uneven_illumination(shape=(384, 384), seed=0):
    """Nuclei under a strong vignette and a background gradient (a 4x fall-off to one corner)."""
    rng = np.random.default_rng(seed)
    inst, depth = cell_layout(shape, rng, radius=(8, 13), density=0.35, touching=0.5)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / float(h * h + w * w)
    field = 0.25 + 0.75 * np.exp(-r2 / 0.35)
    slope = 0.25 * (yy / h) + 0.1 * (xx / w)
    signal = _fluorescence(inst, depth, rng) * field + slope
    return _camera(signal, rng), inst


def saturated(shape=(384, 384), seed=0):
    """Mostly dim nuclei and a few (~6 %) far brighter ones that saturate the camera."""
    rng = np.random.default_rng(seed)
    inst, depth = cell_layout(shape, rng, radius=(8, 13), density=0.35, touching=0.5)
    n = int(inst.max())
    level = rng.uniform(0.25, 0.6, size=n + 1).astype(np.float32)
    bright = rng.random(n + 1) < 0.06
    level[bright] = rng.uniform(6.0, 12.0, size=int(bright.sum()))
    level[0] = 0
    profile = np.where(inst > 0, level[inst] * (1.0 - 0.4 * np.minimum(depth, 1.0) ** 2), 0).astype(np.float32)
    signal = ndi.gaussian_filter(profile * (1 + 0.15 * _texture(shape, rng)) + 0.06, 1.2)
    return _camera(signal, rng, photons=600.0, gain=3000.0, saturate=4095.0 * 4), inst


def mixed_sizes(shape=(384, 384), seed=0):
    """Small (radius 4-6 px) and large (14-24 px) cells side by side."""
    rng = np.random.default_rng(seed)
    big, dbig = cell_layout(shape, rng, radius=(14, 24), density=0.25, touching=0.5)
    small, dsmall = cell_layout(shape, rng, radius=(4, 6), density=0.12, touching=0.4)
    free = ndi.binary_dilation(big > 0, iterations=2)
    small = np.where(free, 0, small)
    small = _largest_pieces(small)
    inst = np.where(big > 0, big, np.where(small > 0, small + int(big.max()), 0))
    depth = np.where(big > 0, dbig, np.where(small > 0, dsmall, np.inf)).astype(np.float32)
    inst = _relabel(inst)
    return _camera(_fluorescence(inst, depth, rng), rng), inst


def phase_contrast(shape=(384, 384), seed=0):
    """Phase contrast: gray cells, darker and textured inside, each wrapped in a bright halo."""
    rng = np.random.default_rng(seed)
    inst, depth = cell_layout(shape, rng, radius=(9, 15), density=0.35, touching=0.5, irregular=0.18)
    cells = inst > 0
    outside = ndi.distance_transform_edt(~cells)
    inside = np.where(cells, 1.0 - np.minimum(depth, 1.0), 0.0)
    signal = 0.5 - 0.22 * np.sqrt(inside) * (1.0 + 0.3 * _texture(shape, rng, 1.5))
    signal = signal + 0.45 * np.exp(-outside / 2.0) * (~cells)  # the halo just outside
    boundary = cells & (ndi.grey_erosion(inst, size=3) != ndi.grey_dilation(inst, size=3))
    signal = signal + 0.25 * ndi.gaussian_filter(boundary.astype(np.float32), 1.0)
    signal = signal + 0.05 * _texture(shape, rng, 8.0)
    return _camera(ndi.gaussian_filter(signal, 0.8), rng, photons=200.0), inst


def dic(shape=(384, 384), seed=0):
    """DIC relief: the cells' optical thickness seen through its gradient along one shear axis."""
    rng = np.random.default_rng(seed)
    inst, depth = cell_layout(shape, rng, radius=(10, 16), density=0.35, touching=0.5, irregular=0.15)
    height = np.where(inst > 0, np.sqrt(np.clip(1.0 - np.minimum(depth, 1.0) ** 2, 0, None)), 0.0).astype(np.float32)
    height = height * (1.0 + 0.2 * _texture(shape, rng, 2.0))
    height = ndi.gaussian_filter(height, 1.0)
    angle = rng.uniform(0, np.pi)
    gy, gx = np.gradient(height)
    relief = np.sin(angle) * gy + np.cos(angle) * gx
    signal = 0.5 + 1.5 * relief + 0.04 * _texture(shape, rng, 10.0)
    return _camera(signal, rng, photons=300.0), inst


def membrane(shape=(384, 384), seed=0):
    """Epithelial tissue with a membrane stain: bright cell outlines, dim interiors, a tissue edge."""
    rng = np.random.default_rng(seed)
    h, w = shape
    n = int(h * w / (np.pi * 13 ** 2))
    pts = np.stack([rng.uniform(0, h, n), rng.uniform(0, w, n)], 1)
    # a Voronoi tessellation (nearest seed) inside a wavy tissue region
    seeds = np.zeros(shape, np.int32)
    seeds[pts[:, 0].astype(int), pts[:, 1].astype(int)] = np.arange(1, n + 1)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    voronoi = seeds[iy, ix]
    yy, xx = np.mgrid[0:h, 0:w]
    edge = 0.7 * w + 20 * np.sin(yy / 37.0 + rng.uniform(0, 6))
    tissue = xx < edge
    inst = np.where(tissue, voronoi, 0)
    # cells cut by the tissue edge keep their piece; membranes are 2 px walls between cells
    wall = ndi.grey_dilation(inst, size=3) != ndi.grey_erosion(inst, size=3)
    inst = np.where(wall & (inst > 0), 0, inst)
    inst = _relabel(_largest_pieces(inst))
    outline = (wall & ndi.binary_dilation(tissue, iterations=1)).astype(np.float32)
    level = np.concatenate([[0.0], rng.uniform(0.6, 1.0, size=int(inst.max()))]).astype(np.float32)
    signal = ndi.gaussian_filter(outline, 1.0) * 1.6 * (1 + 0.3 * _texture(shape, rng, 3.0))
    signal = signal + 0.12 * level[inst] + 0.05
    return _camera(ndi.gaussian_filter(signal, 0.7), rng, photons=200.0), inst


SYNTHETIC = {
    "dense clumps": dense_clumps,
    "low SNR": low_snr,
    "uneven illumination": uneven_illumination,
    "saturated objects": saturated,
    "mixed sizes": mixed_sizes,
    "phase contrast": phase_contrast,
    "DIC": dic,
    "membrane tissue": membrane,
}


# ----------------------------------------------------------------------------- real images


def real_images():
    """``{name: (kind, image, instances)}`` of the real labelled images (2D, complete labels).

    ``kind`` is "real" for curated labels (two planes of the shipped nuclei volume, 20 z-slices
    apart) and "real-auto" for the vendored BBBC007 images, whose labels an algorithm made
    (``data/LICENSE_BBBC007.txt``).
    """
    import tifffile

    from napari_unet.samples import load_nuclei

    out = {}
    image, inst, _ = load_nuclei()
    for z in (0, 5):  # slices 24 and 44 of the volume
        out[f"nuclei 3D plane {24 + 4 * z}"] = ("real", image[z], _relabel(inst[z]))
    if DATA.is_dir():
        for path in sorted(DATA.glob("*_image.tif")):
            labels = path.with_name(path.name.replace("_image.tif", "_labels.tif"))
            if labels.exists():
                name = path.name[: -len("_image.tif")].replace("_", " ")
                out[name] = ("real-auto", tifffile.imread(path), _relabel(tifffile.imread(labels).astype(np.int32)))
    return out


KINDS = ("real", "real-auto", "synthetic")


def suite(kinds=KINDS, seed=0):
    """``[(name, kind, image, instances)]`` of the suite's images of these kinds (see :data:`KINDS`)."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kind(s) {sorted(unknown)}; choose from {KINDS}")
    items = []
    if {"real", "real-auto"} & set(kinds):
        items += [(name, kind, img, inst) for name, (kind, img, inst) in real_images().items() if kind in kinds]
    if "synthetic" in kinds:
        # each kind of difficulty gets its own layout: seed 100 + 10 k for the k-th generator
        items += [(name, "synthetic", *make(seed=seed + 100 + 10 * k)) for k, (name, make) in enumerate(SYNTHETIC.items())]
    return items


# ----------------------------------------------------------------------------- painting


def touching_pairs(instances):
    from napari_unet.samples import touching_pairs as pairs

    return pairs(instances)


def _border_ids(instances):
    return set(np.unique(np.concatenate([instances[0], instances[-1], instances[:, 0], instances[:, -1]])).tolist())


def paint(instances, style="a", seed=0, edge_jitter=0):
    """A sparse annotation of ``instances`` painted as a person paints (see the module docstring).

    ``edge_jitter``: a brush is not exact: each painted cell is, at random, painted one pixel
    short of its edge (eroded), exactly, or one pixel over it (dilated into unpainted pixels),
    ``edge_jitter`` pixels at most (0: exactly the reference cell).

    Returns ``(Y, X) uint16``: 0 = not painted, 1 = background strokes, 2, 3, ... = complete cells.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")
    rng = np.random.default_rng(seed * 7919 + 17)
    inst = np.asarray(instances)
    border = _border_ids(inst)
    ids = [int(i) for i in np.unique(inst) if i > 0 and i not in border]
    # nobody paints most of an image: at most a quarter of its cells (at least 3)
    n_cells = min(STYLES[style], max(3, round(0.25 * len(ids))))
    pairs = [p for p in sorted(touching_pairs(inst)) if p[0] not in border and p[1] not in border]
    rng.shuffle(pairs)
    chosen: list[int] = []
    for p, q in pairs:  # touching pairs first: about half of the painted cells
        if len(chosen) + 2 > max(2, n_cells // 2):
            break
        for c in (p, q):
            if c not in chosen:
                chosen.append(c)
    singles = [c for c in ids if c not in chosen]
    rng.shuffle(singles)
    chosen += singles[: max(0, n_cells - len(chosen))]
    ann = np.zeros(inst.shape, np.uint16)
    for k, c in enumerate(chosen[:n_cells]):
        ann[inst == c] = 2 + k
    if edge_jitter:
        cross = ndi.generate_binary_structure(2, 1)
        for k in range(len(chosen[:n_cells])):
            steps = int(rng.integers(-edge_jitter, edge_jitter + 1))
            cell = ann == 2 + k
            if steps < 0:
                smaller = ndi.binary_erosion(cell, cross, iterations=-steps)
                if smaller.any():
                    ann[cell & ~smaller] = 0
            elif steps > 0:
                ann[ndi.binary_dilation(cell, cross, iterations=steps) & (ann == 0)] = 2 + k
    ann[background_strokes(inst, STROKES, rng) & (ann == 0)] = 1
    return ann


def background_strokes(instances, n, rng, *, width=STROKE_WIDTH, margin=STROKE_MARGIN, length=(25, 90)):
    """``n`` quick straight strokes ``width`` px wide, every pixel >= ``margin`` px from any cell."""
    inst = np.asarray(instances)
    h, w = inst.shape
    far = ndi.distance_transform_edt(inst == 0) >= margin + width / 2.0
    candidates = np.flatnonzero(far)
    strokes = np.zeros(inst.shape, bool)
    if not candidates.size:
        return strokes
    drawn = 0
    for _ in range(40 * n):
        if drawn >= n:
            break
        y, x = divmod(int(candidates[rng.integers(candidates.size)]), w)
        angle = rng.uniform(0, np.pi)
        want = int(rng.integers(*length))
        line = []
        for direction in (1, -1):  # grow both ways from the start until the open space ends
            for t in range(1, want):
                yy = int(round(y + direction * t * np.sin(angle)))
                xx = int(round(x + direction * t * np.cos(angle)))
                if not (0 <= yy < h and 0 <= xx < w) or not far[yy, xx] or len(line) >= want:
                    break
                line.append((yy, xx))
        if len(line) < length[0] // 2:
            continue
        for yy, xx in line + [(y, x)]:
            strokes[yy, xx] = True
        drawn += 1
    grown = ndi.binary_dilation(strokes, iterations=width // 2)
    return grown & (ndi.distance_transform_edt(inst == 0) >= margin)


def paint_corrections(instances, predicted, annotations, n=3, seed=0):
    """The correction round: the ``n`` largest errors of ``predicted`` painted onto ``annotations``.

    Errors are ground-truth cells with no predicted match (missed, or merged with a neighbour):
    painted complete as a new instance; and predicted objects with no ground-truth match that lie
    mostly on background: their background pixels >= 2 px from any cell painted as background
    (a stroke over the false object). The largest errors (in pixels) come first.
    """
    from napari_unet.labels.metrics import match_instances

    inst = np.asarray(instances)
    pred = np.asarray(predicted)
    ann = np.array(annotations, copy=True)
    scores = match_instances(inst, pred)
    matched_g = {m[0] for m in scores["matches"]}
    matched_p = {m[1] for m in scores["matches"]}
    border = _border_ids(inst)
    errors = []  # (size, kind, id)
    sizes = np.bincount(inst.ravel())
    for g in np.unique(inst):
        if g > 0 and int(g) not in matched_g and int(g) not in border and not (ann[inst == g] >= 2).any():
            errors.append((int(sizes[g]), "cell", int(g)))
    far = ndi.distance_transform_edt(inst == 0) >= 2
    psizes = np.bincount(pred.ravel())
    for p in np.unique(pred):
        if p > 0 and int(p) not in matched_p:
            region = (pred == p) & far & (ann == 0)
            if region.sum() > 0.5 * psizes[p]:
                errors.append((int(region.sum()), "background", int(p)))
    errors.sort(reverse=True)
    next_id = int(ann.max()) + 1 if ann.max() >= 2 else 2
    for _, kind, i in errors[:n]:
        if kind == "cell":
            ann[inst == i] = next_id
            next_id += 1
        else:
            ann[(pred == i) & far & (ann == 0)] = 1
    return ann
