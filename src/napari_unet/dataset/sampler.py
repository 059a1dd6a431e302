"""Augmented training tiles drawn around annotated pixels (:class:`TileSampler`)."""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np

from ..annotations.targets import Targets
from ..config import AugmentConfig

__all__ = ["Batch", "TileSampler"]

logger = logging.getLogger(__name__)


class Batch(NamedTuple):
    """A batch of training tiles (torch tensors)."""

    image: "torch.Tensor"  # noqa: F821
    """(B, C, H, W) float32 network input."""
    target: "torch.Tensor"  # noqa: F821
    """(B, h, w) int64 classes of the network's output region."""
    weights: "torch.Tensor"  # noqa: F821
    """(B, h, w) float32 loss weights (0 = ignore)."""


def reflect_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start+length-1`` mirrored into ``0 .. size-1`` (no edge repeat)."""
    idx = np.arange(start, start + length)
    if size == 1:
        return np.zeros(length, dtype=np.intp)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


def _window(array: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """``array[..., y0:y0+h, x0:x0+w]`` with mirrored borders (a copy)."""
    ny, nx = array.shape[-2:]
    if y0 >= 0 and x0 >= 0 and y0 + h <= ny and x0 + w <= nx:
        return array[..., y0 : y0 + h, x0 : x0 + w].copy()
    iy = reflect_indices(y0, h, ny)
    ix = reflect_indices(x0, w, nx)
    return array[..., iy[:, None], ix[None, :]]


def _inside(start: int, length: int, size: int) -> np.ndarray:
    idx = np.arange(start, start + length)
    return (idx >= 0) & (idx < size)


def _tile_shapes(input_shape, output_shape) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(input_shape, output_shape)`` as int pairs, the output centred inside the input."""
    in_shape = tuple(int(s) for s in input_shape)
    out_shape = tuple(int(s) for s in output_shape)
    if len(in_shape) != 2 or len(out_shape) != 2:
        raise ValueError(f"input_shape and output_shape must be (Y, X), got {input_shape}, {output_shape}")
    if any(o > i or o < 1 for o, i in zip(out_shape, in_shape)):
        raise ValueError(f"output_shape {out_shape} must fit inside input_shape {in_shape}")
    if any((i - o) % 2 for o, i in zip(out_shape, in_shape)):
        raise ValueError(f"input_shape {in_shape} - output_shape {out_shape} must be even (the output is centred)")
    return in_shape, out_shape


def annotated_blocks(t: Targets, grid: np.ndarray, block: int):
    """Of the ``block`` x ``block`` squares of one plane that hold annotated pixels: their rank in
    ``grid``, their annotated pixel count, and whether they hold annotated foreground."""
    ny, nx = t.weights.shape
    gy, gx = grid.shape
    pad = ((0, gy * block - ny), (0, gx * block - nx))
    per_block = np.pad(t.weights > 0, pad).reshape(gy, block, gx, block).sum((1, 3))
    fg = np.pad((t.weights > 0) & (t.target > 0), pad).reshape(gy, block, gx, block).any((1, 3))
    return grid[per_block > 0], per_block[per_block > 0], fg[per_block > 0]


def holdout_threshold(ranks, counts, foreground, fraction: float) -> float:
    """The rank up to which squares are held out: closest to ``fraction`` of the annotated pixels,
    at least one square and never all, with some foreground when there is any to spare."""
    order = np.argsort(ranks)
    cumulative = np.cumsum(counts[order])
    k = int(np.argmin(np.abs(cumulative - fraction * cumulative[-1])))  # closest to the fraction
    k = min(k, ranks.size - 2)  # keep at least one square for training
    # sparse annotations hold few cells: make sure validation sees some foreground too
    # (otherwise its IoU is undefined and "best by validation loss" only rewards background)
    if foreground.sum() >= 2 and not foreground[order[: k + 1]].any():
        first_fg = int(np.flatnonzero(foreground[order])[0])
        if first_fg < ranks.size - 1:
            k = first_fg
    return float(ranks[order][k])


def _annotated_tiles(targets, output_shape) -> list[tuple[int, int, int]]:
    """``(plane, centre y, centre x)`` of the cells of an output-size grid over every plane that
    hold annotated pixels."""
    h_out, w_out = output_shape
    tiles = []
    for i, t in enumerate(targets):
        ny, nx = t.weights.shape
        for oy in range(0, ny, h_out):
            for ox in range(0, nx, w_out):
                if (t.weights[oy : oy + h_out, ox : ox + w_out] > 0).any():
                    tiles.append((i, oy + h_out // 2, ox + w_out // 2))
    return tiles


def _to_batch(images, targets, weights, device) -> Batch:
    """Lists of numpy tiles as a :class:`Batch` of torch tensors on ``device``."""
    import torch

    return Batch(
        torch.from_numpy(np.stack(images)).to(device, torch.float32),
        torch.from_numpy(np.stack(targets)).to(device, torch.int64),
        torch.from_numpy(np.stack(weights)).to(device, torch.float32),
    )


class AnnotatedTargets:
    """What the 2D and 3D samplers share: the targets in use (``_targets``, held-out pixels weigh
    0) and the annotated pixels or voxels that patches are centred on (``_centres``)."""

    _targets: list
    _centres: list

    @property
    def n_annotated(self) -> int:
        """Number of pixels (voxels) with a positive weight (possible patch centres)."""
        return int(sum(c.size for c in self._centres))

    @property
    def targets(self) -> list[Targets]:
        """The targets in use (held-out pixels weigh 0)."""
        return list(self._targets)


class TileSampler(AnnotatedTargets):
    """Draws augmented training tiles around annotated pixels.

    Parameters
    ----------
    planes : list of (C, Y, X) float32 arrays
        Normalized image planes (see :func:`training_slices`); sizes may differ, and may be
        smaller than a tile (borders are mirrored).
    targets : list of Targets
        One per plane, same (Y, X).
    input_shape, output_shape : (int, int)
        The network's input tile and its output region (centred in the input; equal for
        "same" padding).
    augment : AugmentConfig or None
        Augmentation (None or ``enabled=False``: plain tiles).
    seed : int
        Seeds the tile positions (numpy) and the augmentation (torch.Generator).

    Notes
    -----
    Every tile is centred on a pixel with a positive weight, drawn uniformly among all such
    pixels of all planes: a plane counts in proportion to its annotated area (images of
    different sizes and annotation densities are weighted by what was painted, not by size).
    The output region therefore always contains annotated pixels (a tile whose augmentation
    moved them out is re-drawn, then taken without augmentation). Target and weights of output
    pixels outside the real image are set to weight 0 (mirrored context is for the image only).
    """

    def __init__(self, planes, targets, *, input_shape, output_shape, augment: AugmentConfig | None = None, seed: int = 0):
        self.input_shape, self.output_shape = _tile_shapes(input_shape, output_shape)
        self.augment = augment if (augment is not None and augment.enabled) else None
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        import torch

        self._generator = torch.Generator().manual_seed(self.seed)
        from .augment import geometric_margin

        self._margin = geometric_margin(self.augment, self.input_shape)
        self._split: dict | None = None  # see split_validation
        self._role = "all"  # "all", "train" (held-out pixels weigh 0) or "validation" (only they weigh)
        self._linked: list[TileSampler] = []
        self.set_data(planes, targets)

    # -- data

    def set_data(self, planes, targets) -> None:
        """Replace all planes and targets."""
        planes, targets = list(planes), list(targets)
        if len(planes) != len(targets):
            raise ValueError(f"got {len(planes)} planes but {len(targets)} targets")
        if not planes:
            raise ValueError("TileSampler needs at least one plane")
        self.planes = []
        self._targets: list[Targets] = []
        self._centres: list[np.ndarray] = []
        for i, (plane, t) in enumerate(zip(planes, targets)):
            self.planes.append(self._check_plane(i, plane))
            self._targets.append(None)
            self._centres.append(np.zeros(0, dtype=np.intp))
        for i, t in enumerate(targets):
            self._store(i, t)
        for other in self._linked:
            other.set_data(planes, targets)

    def set_targets(self, index, targets) -> None:
        """Swap in fresh targets of plane ``index`` (e.g. newly painted annotations).

        ``set_targets(planes, targets)`` with two lists replaces everything (as :meth:`set_data`).
        A validation sampler made by :meth:`split_validation` follows along, with the same
        held-out blocks.
        """
        if not isinstance(index, (int, np.integer)):
            self.set_data(index, targets)
            return
        if not 0 <= int(index) < len(self.planes):
            raise IndexError(f"plane index {index} out of range (0..{len(self.planes) - 1})")
        self._store(int(index), targets)
        for other in self._linked:
            other.set_targets(index, targets)

    def _check_plane(self, i, plane) -> np.ndarray:
        plane = np.asarray(plane, dtype=np.float32)
        if plane.ndim == 2:
            plane = plane[None]
        if plane.ndim != 3:
            raise ValueError(f"plane {i} must be (C, Y, X), got shape {plane.shape}")
        if self.planes and plane.shape[0] != self.planes[0].shape[0]:
            raise ValueError(f"plane {i} has {plane.shape[0]} channels, plane 0 has {self.planes[0].shape[0]}")
        return plane

    def _store(self, i: int, t: Targets) -> None:
        t = Targets(*t)
        shape = self.planes[i].shape[1:]
        for name, a in zip(Targets._fields, t):
            if np.shape(a) != shape:
                raise ValueError(f"targets {i}: {name} has shape {np.shape(a)}, the plane (Y, X) is {shape}")
        weights = np.asarray(t.weights, dtype=np.float32)
        if self._role != "all":
            held = self._holdout_mask(i)
            weights = np.where(held if self._role == "validation" else ~held, weights, np.float32(0))
        weights = weights.astype(np.float32, copy=False)
        self._targets[i] = Targets(np.asarray(t.target, dtype=np.int64), weights, np.asarray(t.mask, bool) & (weights > 0))
        self._centres[i] = np.flatnonzero(weights > 0)

    # -- validation split

    def _block_ranks(self, i: int) -> np.ndarray:
        """Seeded random rank of every block x block square of plane ``i`` (shared by linked samplers)."""
        split = self._split
        block = split["block"]
        ny, nx = self.planes[i].shape[1:]
        shape = (math.ceil(ny / block), math.ceil(nx / block))
        grid = split["ranks"].get(i)
        if grid is None or grid.shape != shape:
            grid = np.random.default_rng([split["seed"], i]).random(shape)
            split["ranks"][i] = grid
        return grid

    def _holdout_mask(self, i: int) -> np.ndarray:
        block = self._split["block"]
        ny, nx = self.planes[i].shape[1:]
        held = self._block_ranks(i) <= self._split["threshold"]
        return np.repeat(np.repeat(held, block, 0), block, 1)[:ny, :nx]

    def split_validation(self, fraction: float = 0.1, seed: int = 0, *, block: int = 32) -> "TileSampler":
        """Hold out about ``fraction`` of the annotated pixels, in square blocks, for validation.

        The planes are cut into ``block`` x ``block`` squares with a seeded random rank each;
        the lowest-ranked squares holding annotations are held out until ``fraction`` of the
        annotated pixels is reached (at least one square, never all of them). This sampler then
        gives those pixels weight 0; the returned sampler (no augmentation) gives weight only to
        them. Both keep the split when :meth:`set_targets` brings new annotations (new squares
        are held out with the same random ranks), as long as it is called on this sampler.

        Typical use::

            val = sampler.split_validation(0.1, seed=0)
            val_batches = val.fixed_batches(max_tiles=16, batch_size=4)  # stable validation set
            ... loss on sampler.sample(4) / metrics on val_batches ...

        Returns
        -------
        TileSampler over the held-out pixels (``n_annotated == 0`` if nothing could be held out).
        """
        if not 0.0 < float(fraction) < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        if self._split is not None:
            raise ValueError("this sampler is already split")
        block = int(block)
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self._split = {"seed": int(seed), "block": block, "threshold": -1.0, "ranks": {}}
        blocks = [annotated_blocks(t, self._block_ranks(i), block) for i, t in enumerate(self._targets)]
        ranks, counts, foreground = (np.concatenate(column) for column in zip(*blocks))
        if ranks.size < 2:
            logger.warning("split_validation: all annotations lie in one %d px square; nothing held out", block)
        else:
            self._split["threshold"] = holdout_threshold(ranks, counts, foreground, float(fraction))
        targets = list(self._targets)
        val = TileSampler(
            self.planes, targets, input_shape=self.input_shape, output_shape=self.output_shape, augment=None, seed=seed
        )
        val._split, val._role = self._split, "validation"
        val.set_data(self.planes, targets)
        self._role = "train"
        self.set_data(self.planes, targets)  # also refreshes val (linked below: not yet)
        self._linked.append(val)
        return val

    # -- tiles

    def _extract(self, i: int, cy: int, cx: int, margin: int):
        """Image region (C, H+2m, W+2m) and target / weights regions for output centre (cy, cx)."""
        h_in, w_in = self.input_shape
        h_out, w_out = self.output_shape
        oy, ox = cy - h_out // 2, cx - w_out // 2  # output region origin in the plane
        y0 = oy - (h_in - h_out) // 2 - margin
        x0 = ox - (w_in - w_out) // 2 - margin
        h, w = h_in + 2 * margin, w_in + 2 * margin
        plane = self.planes[i]
        t = self._targets[i]
        image = _window(plane, y0, x0, h, w)
        if margin == 0:  # no augmentation: only the output region of target / weights is needed
            ty0, tx0, th, tw = oy, ox, h_out, w_out
        else:
            ty0, tx0, th, tw = y0, x0, h, w
        target = _window(t.target, ty0, tx0, th, tw)
        weights = _window(t.weights, ty0, tx0, th, tw)
        ny, nx = plane.shape[1:]
        inside_y, inside_x = _inside(ty0, th, ny), _inside(tx0, tw, nx)
        if not (inside_y.all() and inside_x.all()):
            weights = weights * (inside_y[:, None] & inside_x[None, :])
        return image, target, weights

    def _draw_centres(self, n: int):
        counts = np.array([c.size for c in self._centres], dtype=np.float64)
        total = counts.sum()
        if total == 0:
            raise ValueError("no annotated pixels to sample tiles from (all weights are 0)")
        planes = self._rng.choice(len(counts), size=n, p=counts / total)
        out = []
        for i in planes:
            flat = self._centres[i][self._rng.integers(self._centres[i].size)]
            cy, cx = divmod(int(flat), self.planes[i].shape[2])
            out.append((int(i), cy, cx))
        return out

    def sample(self, batch_size: int, device=None) -> Batch:
        """A batch of ``batch_size`` augmented tiles as torch tensors on ``device``.

        Returns
        -------
        Batch(image (B, C, H, W) float32, target (B, h, w) int64, weights (B, h, w) float32),
        ``(H, W) = input_shape``, ``(h, w) = output_shape``.
        """
        import torch

        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = torch.device("cpu") if device is None else torch.device(device)
        centres = self._draw_centres(batch_size)
        if self.augment is None:
            images, targets, weights = zip(*(self._extract(i, cy, cx, 0) for i, cy, cx in centres))
            return _to_batch(images, targets, weights, device)
        regions = [self._extract(i, cy, cx, self._margin) for i, cy, cx in centres]
        images = torch.from_numpy(np.stack([r[0] for r in regions])).to(device)
        targets = torch.from_numpy(np.stack([r[1] for r in regions])).to(device)
        weights = torch.from_numpy(np.stack([r[2] for r in regions])).to(device)
        image, target, weight, empty = self._augment_annotated(images, targets, weights)
        if bool(empty.any()):  # fall back to the plain tile, whose centre pixel is annotated
            for k in torch.nonzero(empty).flatten().tolist():
                i, cy, cx = centres[k]
                pi, pt, pw = self._extract(i, cy, cx, 0)
                image[k] = torch.from_numpy(pi).to(device)
                target[k] = torch.from_numpy(pt).to(device)
                weight[k] = torch.from_numpy(pw).to(device)
        return Batch(image.float().contiguous(), target.long().contiguous(), weight.float().contiguous())

    def _augment_annotated(self, images, targets, weights):
        """Augmented tiles; a tile whose annotated pixels all moved out of the output is
        augmented again (three tries). Returns (image, target, weights, still empty)."""
        import torch

        from .augment import augment_batch

        def augment(image, target, weight):
            return augment_batch(image, target, weight, self.augment, self._generator,
                                 out_shape=self.input_shape, target_shape=self.output_shape)

        image, target, weight = augment(images, targets, weights)
        empty = (weight > 0).flatten(1).any(1).logical_not()
        for _attempt in range(3):
            if not bool(empty.any()):
                break
            idx = torch.nonzero(empty).flatten()
            image[idx], target[idx], weight[idx] = augment(images[idx], targets[idx], weights[idx])
            empty = (weight > 0).flatten(1).any(1).logical_not()
        return image, target, weight, empty

    def fixed_batches(self, max_tiles: int | None = 16, batch_size: int = 4, device=None) -> list[Batch]:
        """Deterministic, un-augmented tiles covering the annotated pixels (e.g. for validation).

        Each plane is cut into a grid of output-size tiles; those with annotated pixels are kept
        (at most ``max_tiles``, evenly spread over the list), with mirrored context around them.
        """
        tiles = _annotated_tiles(self._targets, self.output_shape)
        if not tiles:
            return []
        if max_tiles is not None and len(tiles) > int(max_tiles):
            pick = np.linspace(0, len(tiles) - 1, int(max_tiles)).round().astype(int)
            tiles = [tiles[k] for k in pick]
        batches = []
        for start in range(0, len(tiles), int(batch_size)):
            parts = [self._extract(i, cy, cx, 0) for i, cy, cx in tiles[start : start + int(batch_size)]]
            images, targets, weights = zip(*parts)
            batches.append(_to_batch(images, targets, weights, device or "cpu"))
        return batches
