"""The tile engine of overlap-tile prediction (:mod:`napari_unet.predict.tiling`; volumes:
:mod:`napari_unet.predict.volume`): runs the tiles of a source through the network, optionally
averaging flipped views of each tile, and writes the kept windows into the output.

Flipped views (test-time augmentation, ``tta``): every tile input is a valid network input whose
size before each 2x2 max-pool is even, and the kept window is centred in the network output, so a
tile flipped along Y and / or X meets the same pooling windows, mirrored, and its output flipped
back covers exactly the same pixels. Averaging the softmax of the views is therefore done tile by
tile, and a tile's result still depends only on its own input: prediction stays seamless, and
blocks of :func:`~napari_unet.predict.tiling.predict_block` still equal the whole image.

``tta="auto"`` decides per image (each plane of a stack, each volume): every tile first gets two
views (itself and its left-right mirror), and the images whose two views disagree on average by
more than :data:`~napari_unet.predict.views.AUTO_DISAGREEMENT` get the other two flips in a second
sweep. The decision is the whole image's, so it does not depend on the tiles either; a block alone
cannot make it (:func:`~napari_unet.predict.tiling.predict_block` refuses ``"auto"``).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generator

import numpy as np
import torch

from ..common.devices import fast_memory_format
from ..model.normalization import apply_normalization
from ..model.unet import UNet, folded_for_inference
from .plan import mirror_indices
from .sources import Source
from . import views as _views
from .views import AUTO, VIEWS, check_tta

__all__ = ["TileEngine", "prepare_model", "check_out"]


def prepare_model(model: UNet, device: torch.device) -> UNet:
    """The network ready to predict on ``device``: in the layout it is fastest in there
    (:func:`fast_memory_format`: channels last on CPUs and CUDA) and, when it has batch norms,
    a copy with them folded into its convolutions (:func:`~napari_unet.model.unet.folded_for_inference`:
    the same function, a pass over every feature map less).

    The caller's model is never changed: when it has batch norms, is on another device or in
    another memory format, a copy is used (one copy per call, negligible next to the prediction).
    """
    try:
        current = next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a UNet always has parameters
        current = device
    same_device = current == device or (current.type == device.type and device.index is None)
    fmt = fast_memory_format(model.spatial_dims, device)
    convs = [m.weight for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) and any(k > 1 for k in m.kernel_size)]
    same_format = fmt is None or all(w.is_contiguous(memory_format=fmt) for w in convs)
    if same_device and same_format and not model.config.batch_norm:
        return model
    net = folded_for_inference(model).to(device)
    if fmt is not None:
        net = net.to(memory_format=fmt)
    return net


def check_out(out, shape: tuple[int, ...], name: str = "out"):
    """``out`` if it is a float array of ``shape`` to write probabilities into (a new float32 array
    when None), else a TypeError / ValueError in plain words."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not hasattr(out, "shape") or not hasattr(out, "__setitem__"):
        raise TypeError(f"{name} must be an array (numpy, memmap or zarr) of shape {shape}, got {type(out).__name__}")
    if tuple(int(s) for s in out.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(out.shape)}, expected {shape} (n_classes, ...non-channel axes)")
    if np.dtype(out.dtype).kind != "f":
        raise TypeError(f"{name} must have a float dtype (float32 recommended), got {out.dtype}")
    return out


class TileEngine:
    """Runs the tiles of one source through the network and writes the kept windows into ``out``.

    ``plans``: one :class:`~napari_unet.predict.plan.AxisPlan` per spatial axis, (Y, X) of the
    planes of a :class:`~napari_unet.predict.sources.Source`, or (Z, Y, X) of the volumes of a source
    whose ``read(plane, zs, ys, xs)`` returns (C, Z, Y, X) (:mod:`napari_unet.predict.volume`).
    """

    def __init__(self, model, source: Source, out, *plans, device, dtype, batch_size, norm, plane=None,
                 tta: int | str = 1):
        tta = check_tta(tta)
        if tta == AUTO and plane is not None:
            raise ValueError("tta='auto' decides per whole image; a block takes 1, 2 or 4 views")
        self.adaptive = tta == AUTO
        self.views = VIEWS[2 if self.adaptive else tta]
        #: with ``tta="auto"``: per plane, the sum of the two first views' disagreement over its
        #: pixels and their count; then the planes that got four views
        self.disagreement: dict[tuple, list[float]] = {}
        self.four_view_planes: list[tuple] = []
        self.plane = plane  # one plane only (a block of distributed prediction): ``out`` has no plane axes
        self.model = model
        self.source = source
        self.out = out
        self.plans = plans
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.lows, self.highs = norm
        self.memory_format = fast_memory_format(len(plans), device)
        self.check_finite = np.dtype(source.data.dtype).kind == "f"

    def jobs(self) -> list[tuple]:
        """(plane, tile index along each axis) of every tile, plane by plane."""
        if self.plane is not None:
            planes = [self.plane]
        else:
            planes = list(np.ndindex(*self.source.plane_shape)) if self.source.plane_shape else [()]
        return [(plane, *tile) for plane in planes for tile in np.ndindex(*(p.count for p in self.plans))]

    def _read_tile(self, plane, *tile: int) -> np.ndarray:
        indices = [mirror_indices(p.input_start(i), p.input_start(i) + p.tile, p.size) for p, i in zip(self.plans, tile)]
        bounds = [(int(ix.min()), int(ix.max()) + 1) for ix in indices]
        block = self.source.read(plane, *(slice(lo, hi) for lo, hi in bounds))
        for axis, (ix, (lo, hi)) in enumerate(zip(indices, bounds), start=1):
            if not (hi - lo == len(ix) and ix[0] == lo and np.all(np.diff(ix) == 1)):
                block = np.take(block, ix - lo, axis=axis)
        if self.check_finite and not np.isfinite(block).all():
            where = f"plane {plane}, " if plane else ""
            at = np.argwhere(~np.isfinite(block))[0][1:]  # the first one, in the image's pixels
            names = "zyx"[-len(at):]
            coords = ", ".join(f"{name}={int(ix[k])}" for name, ix, k in zip(names, indices, at))
            raise ValueError(
                f"the image contains NaN or infinite values ({where}at {coords}); "
                "expected finite numbers: replace them first, e.g. with np.nan_to_num"
            )
        return apply_normalization(block, self.lows, self.highs, channel_axis=0)

    def load_batch(self, batch) -> np.ndarray:
        x = np.empty((len(batch), self.source.n_channels, *(p.tile for p in self.plans)), np.float32)
        for i, (plane, *tile) in enumerate(batch):
            x[i] = self._read_tile(plane, *tile)
        return x

    @torch.inference_mode()
    def forward(self, x: np.ndarray, batch=None, views=None, share: float | None = None) -> np.ndarray:
        """The kept windows of the mean of the network's softmax over ``views`` (default: the
        engine's) of the tiles ``x``; ``share``: divide the sum of the views by this many instead.
        With ``tta="auto"`` and the engine's views, the tiles' disagreement is added up by plane
        (``batch``: their jobs)."""
        first_sweep = views is None
        views = self.views if first_sweep else views
        t = torch.from_numpy(x).to(self.device)
        if self.memory_format is not None:
            t = t.contiguous(memory_format=self.memory_format)
        kept = (slice(None), slice(None), *(slice(p.offset, p.offset + p.step) for p in self.plans))
        if self.adaptive and first_sweep:
            probs = self._sum_of_views(t, views[:1])
            second = self._sum_of_views(t, views[1:])
            self._add_disagreement(0.5 * (probs[kept] - second[kept]).abs().sum(dim=1), batch)
            probs += second
            del second
        else:
            probs = self._sum_of_views(t, views)
        share = len(views) if share is None else share
        if share != 1:
            probs /= share
        return probs[kept].cpu().numpy()

    def _sum_of_views(self, t, views):
        """The sum of the network's softmax over ``views`` (flipped dims) of the batch ``t``, each
        flipped back."""
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        total = None
        for dims in views:  # one view after the other: the memory of one forward pass
            with autocast:
                logits = self.model(t.flip(dims) if dims else t)
            view = torch.softmax(logits.float(), dim=1)
            view = view.flip(dims) if dims else view
            total = view if total is None else total.add_(view)
        return total

    def _add_disagreement(self, disagreement, batch) -> None:
        """Add each tile's disagreement (``(B, *kept window)``) over the pixels it writes to its plane's sum."""
        for d, (plane, *tile) in zip(disagreement, batch):
            window = tuple(slice(0, min(p.step, p.extent - i * p.step)) for p, i in zip(self.plans, tile))
            part = d[window]
            total = self.disagreement.setdefault(tuple(plane), [0.0, 0])
            total[0] += float(part.double().sum())
            total[1] += part.numel()

    def _unsure_planes(self) -> list[tuple]:
        """The planes whose two first views disagree on average more than AUTO_DISAGREEMENT."""
        return [plane for plane, (total, n) in self.disagreement.items()
                if n and total / n > _views.AUTO_DISAGREEMENT]

    def write_batch(self, probs: np.ndarray, batch, add_to_half: bool = False) -> None:
        """Write the kept windows ``probs`` of the tiles ``batch``; ``add_to_half``: add them to
        half of what is there (the second sweep of ``tta="auto"``: (v1 + v2) / 2 / 2 + (v3 + v4) / 4)."""
        for p, (plane, *tile) in zip(probs, batch):
            starts = [i * plan.step for plan, i in zip(self.plans, tile)]
            stops = [min(start + plan.step, plan.extent) for plan, start in zip(self.plans, starts)]
            where = () if self.plane is not None else plane
            window = tuple(slice(start, stop) for start, stop in zip(starts, stops))
            kept = tuple(slice(0, stop - start) for start, stop in zip(starts, stops))
            index = (slice(None), *where, *window)
            if add_to_half:
                self.out[index] = np.asarray(self.out[index]) * 0.5 + p[(slice(None), *kept)]
            else:
                self.out[index] = p[(slice(None), *kept)]

    def run(self) -> Generator[tuple[int, int], None, None]:
        """Yields ``(done, total)`` tiles (with ``tta="auto"``: tile sweeps of two views, the
        second sweep counted as the planes that need it are known)."""
        jobs = self.jobs()
        total = 2 * len(jobs) if self.adaptive else len(jobs)
        yield 0, total
        yield from self._sweep(jobs, 0, total)
        if not self.adaptive:
            return
        unsure = set(self._unsure_planes())
        self.four_view_planes = sorted(unsure)
        second = [job for job in jobs if tuple(job[0]) in unsure]
        total = len(jobs) + len(second)
        if second:
            yield from self._sweep(second, len(jobs), total, views=VIEWS[4][2:], share=4.0)
        yield total, total

    def _sweep(self, jobs, done: int, total: int, views=None, share=None) -> Generator[tuple[int, int], None, None]:
        """Run ``jobs`` through the network (``views``, ``share``: as :meth:`forward` takes them;
        given: added to half of the first sweep's output), yielding ``(done, total)`` after each batch."""
        batches = [jobs[i : i + self.batch_size] for i in range(0, len(jobs), self.batch_size)]
        add = views is not None
        if len(batches) == 1:  # nothing to overlap
            self.write_batch(self.forward(self.load_batch(batches[0]), batches[0], views, share), batches[0], add)
            yield done + len(jobs), total
            return
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-read")
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-write")
        pending_write: Future | None = None
        try:
            pending_read = reader.submit(self.load_batch, batches[0])
            for k, batch in enumerate(batches):
                x = pending_read.result()
                if k + 1 < len(batches):
                    pending_read = reader.submit(self.load_batch, batches[k + 1])
                probs = self.forward(x, batch, views, share)
                del x
                if pending_write is not None:
                    pending_write.result()
                pending_write = writer.submit(self.write_batch, probs, batch, add)
                done += len(batch)
                if done < total:
                    yield done, total
            pending_write.result()
            pending_write = None
            yield done, total
        finally:
            # on cancel (generator closed) or error: let the threads finish their current item
            reader.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
