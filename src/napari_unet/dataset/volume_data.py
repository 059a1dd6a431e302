"""What a 3D U-Net learns from: the painted slices of z-stacks (Çiçek et al. 2016).

The annotation layer has the stack's shape; any set of painted XY slices (and XZ / YZ planes
painted in napari's transposed views) trains the network and every voxel left unpainted weighs 0
(the 3D U-Net's sparse annotation, the same loss as in 2D). Each painted plane gets the targets of
a painted 2D plane (:func:`napari_unet.make_targets`: the gap between touching cells, the
one-pixel ring around complete cells, the border term and the class balance) from its own painting
(:func:`plane_painting`: not what a crossing plane left on it), in place; training draws 3D
patches centred on painted voxels, with mirrored context at the stack's borders, augmented on the
training device (:func:`napari_unet.dataset.augment_volume.augment_volume_batch`, scaled by the
voxel size).

Validation holds out square blocks of the painted slices (as the 2D sampler does, ranked by a
seeded random draw); :class:`VolumeData` has the interface of
:class:`napari_unet.dataset.training_data.TrainingData`, so one :class:`~napari_unet.Trainer` trains both.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np

from ..annotations.planes import resolve_axes, validate_annotations
from ..annotations.targets import Targets, make_targets, painted_cell_diameter
from ..common.checks import check_finite_image
from ..config import TrainConfig
from ..model.normalization import apply_normalization, normalization_params
from .sampler import AnnotatedTargets, Batch, annotated_blocks, holdout_threshold, reflect_indices
from .training_data import config_border_sigma, training_normalization

__all__ = ["VolumeData", "VolumeSampler", "painted_volumes", "painted_planes", "plane_painting"]

logger = logging.getLogger(__name__)


def painted_volumes(image, annotations, *, axes: str | None, normalization: dict | None):
    """The (C, Z, Y, X) float32 volumes of ``image`` (normalized over the whole image, per
    channel) that hold painted voxels, with their (Z, Y, X) annotations, and the resolved axes.
    ValueError when the image has no Z axis."""
    ann = np.asarray(annotations)
    shape = tuple(np.shape(image))
    axes = resolve_axes(shape, ann.shape, axes)
    if "Z" not in axes:
        raise ValueError(f"a 3D network trains on z-stacks: axes {axes!r} (shape {shape}) have no Z; "
                         "name the z axis (e.g. axes='ZYX') or train a 2D network")
    channel_axis = axes.index("C") if "C" in axes else None
    lows, highs = normalization_params(image, normalization, channel_axis=channel_axis)
    spatial = [a for a in axes if a != "C"]
    lead = [a for a in spatial if a not in "ZYX"]
    out = []
    for index in np.ndindex(*(ann.shape[spatial.index(a)] for a in lead)):
        ann_key = tuple(index) + (slice(None),) * 3
        volume_ann = np.asarray(ann[ann_key])
        if not volume_ann.any():
            continue
        key = []
        for a in axes:
            key.append(index[lead.index(a)] if a in lead else slice(None))
        volume = np.asarray(image[tuple(key)])
        check_finite_image(volume, f"the volume at {tuple(int(i) for i in index)}" if index else "the stack")
        rest = [a for a in axes if a not in lead]  # Z, Y, X and maybe C, in the image's order
        volume = np.moveaxis(volume, rest.index("C"), 0) if "C" in rest else volume[None]
        volume = apply_normalization(volume, lows, highs, channel_axis=0 if lows is not None else None)
        out.append((np.ascontiguousarray(volume, dtype=np.float32), volume_ann))
    return out, axes


def painted_planes(annotations) -> list[tuple[int, int]]:
    """``(axis, index)`` of the planes of a (Z, Y, X) annotation that were painted flat: those where
    most painted voxels have no painted neighbour on either side along ``axis``, and at least 5 % as
    many as in the largest such plane (an XY slice is
    ``(0, z)``; an XZ plane painted in napari's transposed view ``(1, y)``; a YZ plane ``(2, x)``),
    but not an XY slice most of whose cell voxels go on under the same id in a slice beside it: that
    is a slice of cells painted through consecutive slices, a painted volume.

    >>> a = np.zeros((8, 8, 8), int); a[2, 1:6, 1:6] = 2; a[:, 4, 1:7] = 1
    >>> painted_planes(a)
    [(0, 2), (1, 4)]
    >>> b = np.zeros((8, 8, 8), int); b[2:4, 6:8, :] = 1; b[2:4, 1:6, 1:6] = 2  # a cell painted through two slices
    >>> painted_planes(b)
    []
    """
    ann = np.asarray(annotations)
    painted = ann > 0
    found, counts = [], []
    for axis in range(3):
        pad = np.pad(painted, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        before = pad[tuple(slice(0, -2) if a == axis else slice(None) for a in range(3))]
        after = pad[tuple(slice(2, None) if a == axis else slice(None) for a in range(3))]
        others = tuple(a for a in range(3) if a != axis)
        alone = np.count_nonzero(painted & ~before & ~after, axis=others)
        volume = _volume_slices(ann) if axis == 0 else False
        flat = np.flatnonzero((alone > 0) & (2 * alone >= painted.sum(axis=others)) & ~volume)
        found += [(axis, int(i)) for i in flat]
        counts += [int(alone[i]) for i in flat]
    # a few thin stroke ends of a slice are no plane: at least 5 % of the largest plane's voxels
    return [plane for plane, n in zip(found, counts) if 20 * n >= max(counts)]


def _volume_slices(ann: np.ndarray) -> np.ndarray:
    """(Z,) bool: the XY slices most of whose cell voxels go on under the same id in a slice beside
    them (slice by slice, so that a large annotation is not copied)."""
    out = np.zeros(len(ann), bool)
    for z in range(len(ann)):
        cells = ann[z] >= 2
        n = np.count_nonzero(cells)
        if not n:
            continue
        going_on = np.zeros(cells.shape, bool)
        for other in (z - 1, z + 1):
            if 0 <= other < len(ann):
                going_on |= ann[other] == ann[z]
        out[z] = 2 * np.count_nonzero(cells & going_on) > n
    return out


def painted_runs(annotations) -> list[slice]:
    """The runs of consecutive XY slices of a (Z, Y, X) annotation that hold painting, as slices
    along z.

    >>> a = np.zeros((8, 4, 4), int); a[1, 0, 0] = a[3:6, 1, 1] = 1
    >>> painted_runs(a)
    [slice(1, 2, None), slice(3, 6, None)]
    """
    painted = (np.asarray(annotations) > 0).reshape(len(annotations), -1).any(1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], painted.astype(np.int8), [0]])))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def planes_and_rest(annotations) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The flat planes of a (Z, Y, X) annotation (:func:`painted_planes`) and the annotation of
    what lies on none of them (a painted volume's voxels; 0 elsewhere)."""
    ann = np.asarray(annotations)
    planes = painted_planes(ann)
    covered = np.zeros(ann.shape, bool)
    for axis, i in planes:
        index = (slice(None),) * axis + (i,)
        covered[index] |= ann[index] > 0
    return planes, np.where(covered, 0, ann)


def plane_painting(annotations, axis: int, index: int, planes) -> np.ndarray:
    """The painting of the flat plane ``(axis, index)`` of a (Z, Y, X) annotation, without what the
    other painted ``planes`` (:func:`painted_planes`) left on it.

    Planes of two orientations meet along a line (an XZ plane crosses every XY slice along a row),
    whose voxels hold what was painted last. A line pixel is this plane's when an in-plane
    neighbour off the lines is painted: it keeps its value when a neighbour has it, else takes the
    neighbours' (a cell painted here under another id in the XZ view stays one cell, not two
    cells with a gap). A line pixel with no painted neighbour off the lines is the other plane's
    painting and is left unpainted here: a cell painted in the XZ view that crosses an unpainted
    part of this slice is a 1-pixel line of it, no complete cell of this slice, and its ring would
    make background of the cell's own voxels.

    >>> a = np.zeros((6, 8, 8), int); a[2, 1:7, 1:4] = 2; a[:, 4, :] = 1; a[1:4, 4, 5:7] = 3
    >>> plane_painting(a, 0, 2, [(0, 2), (1, 4)])[3:6, :]      # the XZ plane's row y = 4 of slice 2
    array([[0, 2, 2, 2, 0, 0, 0, 0],
           [0, 2, 2, 2, 0, 0, 0, 0],
           [0, 2, 2, 2, 0, 0, 0, 0]])
    """
    plane = np.array(np.asarray(annotations)[(slice(None),) * axis + (index,)])
    across = [(a, j) for a, j in planes if a != axis]
    if not across:
        return plane
    plane_axes = [a for a in range(3) if a != axis]
    line = np.zeros(plane.shape, bool)
    for a, j in across:
        line[(slice(None),) * plane_axes.index(a) + (j,)] = True
    own = np.where(line, 0, plane)
    padded = np.pad(own, 1)
    near = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])[:, line]
    value = plane[line]
    painted = near > 0
    agrees = (near == value).any(axis=0)
    # the value most of the painted neighbours hold (the first of them on a tie)
    votes = ((near[:, None] == near[None]) & painted[None]).sum(axis=1) * painted
    majority = near[np.argmax(votes, axis=0), np.arange(near.shape[1])]
    plane[line] = np.where((value == 0) | ~painted.any(axis=0), 0, np.where(agrees, value, majority))
    return plane


def _window(array: np.ndarray, starts, lengths) -> np.ndarray:
    """``array[..., z0:z0+d, y0:y0+h, x0:x0+w]`` with mirrored borders (a copy)."""
    size = array.shape[-3:]
    if all(s >= 0 and s + n <= m for s, n, m in zip(starts, lengths, size)):
        return array[(Ellipsis, *(slice(s, s + n) for s, n in zip(starts, lengths)))].copy()
    for axis, (s, n, m) in zip((-3, -2, -1), zip(starts, lengths, size)):
        if s < 0 or s + n > m:
            array = array.take(reflect_indices(s, n, m), axis=axis)
        else:
            array = array[(Ellipsis, slice(s, s + n)) + (slice(None),) * (-1 - axis)]
    return np.ascontiguousarray(array)


def _inside(starts, lengths, size) -> np.ndarray:
    """(d, h, w) bool: which voxels of a window lie inside the volume."""
    axes = [(np.arange(s, s + n) >= 0) & (np.arange(s, s + n) < m) for s, n, m in zip(starts, lengths, size)]
    return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]


def _patch_spacing(spacing, shape) -> tuple[float, float, float]:
    """The voxel size the augmentation of patches of ``shape`` uses: ``spacing`` (cubic voxels when
    None), with the z-step raised so that a patch is never deformed more along Z, relative to its
    extent, than along Y and X (a 16-slice patch displaced by the 10 px of the paper would fold)."""
    dz, dy, dx = (1.0, 1.0, 1.0) if spacing is None else (float(s) for s in spacing)
    return max(dz, dy * shape[1] / shape[0]), dy, dx


class VolumeSampler(AnnotatedTargets):
    """Draws augmented 3D training patches centred on painted voxels.

    ``volumes``: (C, Z, Y, X) float32; ``targets``: one :class:`~napari_unet.annotations.targets.Targets` of
    (Z, Y, X) arrays per volume; ``input_shape`` / ``output_shape``: (Z, Y, X) network input and
    output (centred); ``spacing``: the voxel size (z, y, x) that scales the augmentation.
    """

    def __init__(self, volumes, targets, *, input_shape, output_shape, augment=None, spacing=None, seed: int = 0):
        import torch

        from .augment_volume import volume_margin

        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = tuple(int(s) for s in output_shape)
        self.augment = augment if (augment is not None and augment.enabled) else None
        self.spacing = _patch_spacing(spacing, self.input_shape)
        self._rng = np.random.default_rng(int(seed))
        self._generator = torch.Generator().manual_seed(int(seed))
        self._margin = volume_margin(self.augment, self.input_shape, self.spacing) if self.augment else (0, 0, 0)
        self.volumes = list(volumes)
        self._targets = [Targets(*t) for t in targets]
        self._centres = [np.flatnonzero(t.weights > 0) for t in self._targets]

    def _extract(self, i: int, centre, margin):
        """Image (C, *input + 2 margin), target and weights for the output centred at ``centre``."""
        volume, t = self.volumes[i], self._targets[i]
        out_start = [c - o // 2 for c, o in zip(centre, self.output_shape)]
        starts = [s - (n - o) // 2 - m for s, n, o, m in zip(out_start, self.input_shape, self.output_shape, margin)]
        lengths = [n + 2 * m for n, m in zip(self.input_shape, margin)]
        image = _window(volume, starts, lengths)
        if not any(margin):  # no augmentation: only the output region of target / weights
            starts, lengths = out_start, list(self.output_shape)
        target = _window(t.target, starts, lengths)
        weights = _window(t.weights, starts, lengths) * _inside(starts, lengths, t.weights.shape)
        return image, target, weights.astype(np.float32, copy=False)

    def _draw(self, n: int):
        counts = np.array([c.size for c in self._centres], dtype=np.float64)
        if counts.sum() == 0:
            raise ValueError("no painted voxels to sample patches from (all weights are 0)")
        out = []
        for i in self._rng.choice(len(counts), size=n, p=counts / counts.sum()):
            flat = self._centres[i][self._rng.integers(self._centres[i].size)]
            out.append((int(i), np.unravel_index(int(flat), self._targets[i].weights.shape)))
        return out

    def sample(self, batch_size: int, device=None) -> Batch:
        """``batch_size`` augmented patches: image (B, C, Z, Y, X), target and weights (B, z, y, x)."""
        import torch

        from .augment_volume import augment_volume_batch

        device = torch.device("cpu") if device is None else torch.device(device)
        centres = self._draw(int(batch_size))
        if self.augment is None:
            return _to_batch([self._extract(i, c, (0, 0, 0)) for i, c in centres], device)
        parts = [self._extract(i, c, self._margin) for i, c in centres]
        image, target, weights = (torch.from_numpy(np.stack([p[k] for p in parts])).to(device) for k in range(3))
        out = augment_volume_batch(image, target, weights, self.augment, self._generator, spacing=self.spacing,
                                   out_shape=self.input_shape, target_shape=self.output_shape)
        image_out, target_out, weights_out = out
        empty = (weights_out > 0).flatten(1).any(1).logical_not()
        for k in torch.nonzero(empty).flatten().tolist():  # painted voxels moved out: the plain patch
            i, c = centres[k]
            plain = self._extract(i, c, (0, 0, 0))
            image_out[k], target_out[k], weights_out[k] = (torch.from_numpy(a).to(device) for a in plain)
        return Batch(image_out.float().contiguous(), target_out.long().contiguous(), weights_out.float().contiguous())

    def fixed_batches(self, max_tiles: int | None = 16, batch_size: int = 4, device=None) -> list[Batch]:
        """Un-augmented patches over an output-size grid of every volume, those with painted voxels
        (at most ``max_tiles``, evenly spread), e.g. for validation."""
        tiles = []
        for i, t in enumerate(self._targets):
            painted = t.weights > 0
            for start in np.ndindex(*(math.ceil(s / o) for s, o in zip(painted.shape, self.output_shape))):
                index = tuple(slice(k * o, (k + 1) * o) for k, o in zip(start, self.output_shape))
                if painted[index].any():
                    tiles.append((i, tuple(k * o + o // 2 for k, o in zip(start, self.output_shape))))
        if max_tiles is not None and len(tiles) > int(max_tiles):
            tiles = [tiles[k] for k in np.linspace(0, len(tiles) - 1, int(max_tiles)).round().astype(int)]
        return [_to_batch([self._extract(i, c, (0, 0, 0)) for i, c in tiles[s : s + int(batch_size)]], device or "cpu")
                for s in range(0, len(tiles), int(batch_size))]


def _to_batch(parts, device) -> Batch:
    import torch

    image, target, weights = (np.stack([p[k] for p in parts]) for k in range(3))
    return Batch(torch.from_numpy(image).to(device, torch.float32), torch.from_numpy(target).to(device, torch.int64),
                 torch.from_numpy(weights).to(device, torch.float32))


def _holdout_masks(targets: list[Targets], fraction: float, seed: int, block: int) -> list[np.ndarray]:
    """Per volume, the (Z, Y, X) bool of held-out voxels: ``block`` x ``block`` squares of the painted
    slices, the lowest of a seeded random rank, up to about ``fraction`` of the painted voxels."""
    grids, found = {}, []
    for i, t in enumerate(targets):
        ny, nx = t.weights.shape[1:]
        for z in np.flatnonzero((t.weights > 0).any((1, 2))):
            grid = np.random.default_rng([seed, i, int(z)]).random((math.ceil(ny / block), math.ceil(nx / block)))
            grids[i, int(z)] = grid
            found.append(annotated_blocks(Targets(t.target[z], t.weights[z], t.mask[z]), grid, block))
    ranks, counts, foreground = (np.concatenate(column) for column in zip(*found))
    masks = [np.zeros(t.weights.shape, bool) for t in targets]
    if ranks.size < 2:
        logger.warning("all painted voxels lie in one %d px square; nothing held out for validation", block)
        return masks
    threshold = holdout_threshold(ranks, counts, foreground, fraction)
    for (i, z), grid in grids.items():
        ny, nx = masks[i].shape[1:]
        masks[i][z] = np.repeat(np.repeat(grid <= threshold, block, 0), block, 1)[:ny, :nx]
    return masks


class VolumeData:
    """The painted volumes of z-stacks for a 3D network (the interface of
    :class:`~napari_unet.dataset.training_data.TrainingData`): checked at once, before any training."""

    def __init__(self, images, annotations, axes_list, *, config: TrainConfig, normalization: dict | None = None):
        self.config = config
        self.images = images
        self.axes = axes_list
        self.normalization = training_normalization(config, normalization)
        self.spacing = tuple(config.pixel_size) if config.pixel_size is not None and len(config.pixel_size) == 3 \
            else None
        self.resolved_axes: dict[int, str] = {}
        self._lock = threading.Lock()
        self._pending: dict[int, Any] = {}
        self.volume_lists = [self._volumes(i, image, ann, axes)
                             for i, (image, ann, axes) in enumerate(zip(images, annotations, axes_list))]
        channels = {int(v.shape[0]) for volumes in self.volume_lists for v, _ in volumes}
        if len(channels) > 1:
            raise ValueError(f"all images must have the same number of channels, got {sorted(channels)}")
        if not self.annotations():
            raise ValueError("nothing is painted: paint background (label 1) and cells (labels 2, 3, ...) "
                             "in a few slices of the stack")
        n_classes = config.n_classes if config.mode == "classes" else None
        self.max_class = validate_annotations(self.annotations(), mode=config.mode, n_classes=n_classes)
        self.channels = channels.pop()
        self.sampler = self.val_sampler = None
        self.val_batches: list = []
        self.sigma = self.border_sigma()
        self.n_annotated = 0

    def _volumes(self, index: int, image, annotations, axes):
        try:
            volumes, resolved = painted_volumes(image, annotations, axes=axes, normalization=self.normalization)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"image {index}: {exc}") from None
        self.resolved_axes[index] = resolved
        return volumes

    def _planes(self) -> list[tuple[int, np.ndarray]]:
        """``(axis, plane)`` of every painted plane (:func:`painted_planes`), then every XY slice
        of what lies on none (a painted volume's slices), volume by volume."""
        out = []
        for _, ann in (v for volumes in self.volume_lists for v in volumes):
            planes, rest = planes_and_rest(ann)
            out += [(axis, plane_painting(ann, axis, i, planes)) for axis, i in planes]
            out += [(0, rest[z]) for z in range(ann.shape[0]) if rest[z].any()]
        return out

    def annotations(self) -> list[np.ndarray]:
        """Every painted plane (:func:`painted_planes`), then every painted XY slice of what lies on
        none, volume by volume."""
        return [plane for _, plane in self._planes()]

    def _planes_in_xy_pixels(self) -> tuple[list[np.ndarray], list[float]]:
        """Every painted plane and the area of its pixel in XY pixels (:meth:`_plane_spacing`: an XZ
        plane's pixel is the z-step times the x pixel; cubic voxels when the voxel size is not known)."""
        planes = self._planes()
        return [p for _, p in planes], [math.prod(self._plane_spacing(axis) or (1.0, 1.0)) for axis, _ in planes]

    def _voxel_spacing(self):
        """The voxel (depth, height, width) in XY pixels (their geometric mean); None when the
        voxel size is not known (cubic voxels)."""
        if self.spacing is None:
            return None
        dz, dy, dx = self.spacing
        pixel = math.sqrt(dy * dx)
        return (dz / pixel, dy / pixel, dx / pixel)

    def _plane_spacing(self, axis: int):
        """The pixel (height, width) of a plane across ``axis`` in XY pixels: z-step by x for an
        XZ plane, z-step by y for a YZ plane; None for an XY slice."""
        voxel = self._voxel_spacing()
        if axis == 0 or voxel is None:
            return None
        return tuple(v for a, v in enumerate(voxel) if a != axis)

    def border_sigma(self) -> float:
        return config_border_sigma(self.config, *self._planes_in_xy_pixels())

    def cell_diameter(self) -> float | None:
        """Median diameter (pixels, in XY) of the painted cell cross-sections (instance mode): a cell
        painted in an XZ or YZ plane counts with its area in XY pixels (the voxel size's z-step)."""
        if self.config.mode != "instances":
            return None
        return painted_cell_diameter(*self._planes_in_xy_pixels())

    def targets_for(self, ann, *, n_classes: int, borders: bool, axis: int = 0) -> Targets:
        """Targets of one painted plane, or of a (Z, Y, X) volume plane by plane: each plane painted
        flat (an XY slice, or an XZ / YZ plane painted in napari's transposed views) gets the
        targets of a painted 2D plane in its own orientation (:func:`painted_planes`); voxels on two
        planes keep the target of the larger weight; what lies on no flat plane, cells painted in
        consecutive slices (a painted volume), gets targets in 3D (:func:`make_targets` of each run
        of consecutive painted slices: gaps, ring and border term in 3D, with the voxel size; a lone
        slice in XY). The border term of a plane measures its
        distances in XY pixels (``axis``: 1 for an XZ plane, 2 for a YZ plane, whose rows are
        z-steps)."""
        ann = np.asarray(ann)
        if ann.ndim == 2:
            return self._make_targets(ann, n_classes, borders, self._plane_spacing(axis))
        target = np.zeros(ann.shape, np.int64)
        weights = np.zeros(ann.shape, np.float32)
        planes, rest = planes_and_rest(ann)
        parts = [((slice(None),) * axis + (i,), plane_painting(ann, axis, i, planes), self._plane_spacing(axis))
                 for axis, i in planes]
        for run in painted_runs(rest):  # a painted volume in 3D, a lone slice in XY
            volume = run.stop - run.start > 1
            parts.append((run, rest[run] if volume else rest[run.start], self._voxel_spacing() if volume else None))
        for index, part, spacing in parts:
            t = self._make_targets(part, n_classes, borders, spacing)
            better = t.weights > weights[index]
            weights[index] = np.where(better, t.weights, weights[index])
            target[index] = np.where(better, t.target, target[index])
        return Targets(target, weights, weights > 0)

    def _make_targets(self, ann, n_classes: int, borders: bool, spacing) -> Targets:
        """:func:`make_targets` of a plane or a painted volume with this run's settings."""
        cfg = self.config
        return make_targets(ann, mode=cfg.mode, n_classes=n_classes, gap=cfg.gap, w0=cfg.w0, sigma=self.sigma,
                            class_weights=cfg.class_weights, ring=cfg.ring, ring_border=cfg.ring_border,
                            borders=borders, spacing=spacing)

    def build(self, *, seed: int, n_classes: int, borders: bool, input_shape, output_shape, batch_size: int, device):
        """Targets of every painted volume, the validation split and the patch sampler."""
        cfg = self.config
        self._geometry = dict(n_classes=n_classes, borders=borders, input_shape=input_shape,
                              output_shape=output_shape, batch_size=batch_size, device=device)
        self.sigma = self.border_sigma()
        volumes = [v for vs in self.volume_lists for v, _ in vs]
        targets = [self.targets_for(a, n_classes=n_classes, borders=borders) for vs in self.volume_lists for _, a in vs]
        held = [np.zeros(t.weights.shape, bool) for t in targets]
        if cfg.validation_fraction > 0:
            # the held-out squares follow the config's seed, not ``seed``: a rebuild keeps them
            held = _holdout_masks(targets, cfg.validation_fraction, int(cfg.seed) + 1, cfg.validation_block)
        def kept(where):  # the targets with weight only where ``where`` holds
            return [Targets(t.target, np.where(w, t.weights, np.float32(0)), t.mask & w) for t, w in zip(targets, where)]

        self.sampler = VolumeSampler(volumes, kept([~h for h in held]), input_shape=input_shape,
                                     output_shape=output_shape, augment=cfg.augment, spacing=self.spacing, seed=seed)
        val = VolumeSampler(volumes, kept(held), input_shape=input_shape, output_shape=output_shape)
        self.val_sampler = val if val.n_annotated > 0 else None
        self.val_batches = [] if self.val_sampler is None else self.val_sampler.fixed_batches(
            max_tiles=cfg.validation_tiles, batch_size=batch_size, device=device)
        self.n_annotated = int(sum(int((t.weights > 0).sum()) for t in targets))

    def set_annotations(self, index: int, annotations) -> None:
        """Queue fresh annotations for image ``index`` (thread-safe; checked at once)."""
        if not 0 <= index < len(self.images):
            raise IndexError(f"image index {index} out of range (0..{len(self.images) - 1})")
        volumes = self._volumes(index, self.images[index], annotations, self.axes[index])
        with self._lock:
            self._pending[index] = volumes

    def apply_pending(self, seed: int) -> bool:
        """Swap in queued annotations and rebuild the targets and the sampler (drawing from
        ``seed``); True when they changed. The held-out squares keep their random ranks."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return False
        old = list(self.volume_lists)
        for index, volumes in pending.items():
            self.volume_lists[index] = volumes
        try:
            validate_annotations(self.annotations(), mode=self.config.mode,
                                 n_classes=self._geometry["n_classes"] if self.config.mode == "classes" else None)
        except (ValueError, TypeError) as exc:
            self.volume_lists = old
            logger.warning("new annotations ignored for now: %s", exc)
            return False
        self.build(seed=seed, **self._geometry)
        return True

    def intensity_range(self, index: int):
        """``(lows, highs)`` that training maps to 0 and 1 in image ``index`` (None: no normalization)."""
        axes = self.resolved_axes[index]
        lows, highs = normalization_params(self.images[index], self.normalization,
                                           channel_axis=axes.index("C") if "C" in axes else None)
        return None if lows is None else (lows, highs)
