"""The tile engine of overlap-tile prediction (:mod:`napari_unet.predict.tiling`; volumes:
:mod:`napari_unet.predict.volume`): runs the tiles of a source through the network, optionally
averaging flipped views of each tile, and writes the kept windows into the output.

Flipped views (test-time augmentation, ``tta``): every tile input is a valid network input whose
size before each 2x2 max-pool is even, and the kept window is centred in the network output, so a
tile flipped along Y and / or X meets the same pooling windows, mirrored, and its output flipped
back covers exactly the same pixels. Averaging the softmax of the views is therefore done tile by
tile, and a tile's result still depends only on its own input: prediction stays seamless, and
blocks of :func:`~napari_unet.predict.tiling.predict_block` still equal the whole image.
"""

from __future__ import annotations

import contextlib
import copy
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generator

import numpy as np
import torch

from ..model.normalization import apply_normalization
from ..model.unet import UNet
from .plan import mirror_indices
from .sources import Source
from .views import VIEWS, check_tta

__all__ = ["TileEngine", "prepare_model", "check_out"]


def prepare_model(model: UNet, device: torch.device, channels_last: bool) -> UNet:
    """The network on ``device`` with channels_last weights where that is faster (CPU, CUDA;
    channels_last_3d for a 3D network).

    The caller's model is never changed: when it is on another device or in another memory
    format, a copy is used (one copy per call, negligible next to the prediction itself).
    """
    try:
        current = next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a UNet always has parameters
        current = device
    same_device = current == device or (current.type == device.type and device.index is None)
    fmt = _memory_format(model.spatial_dims)
    convs = [m.weight for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) and any(k > 1 for k in m.kernel_size)]
    same_format = not channels_last or all(w.is_contiguous(memory_format=fmt) for w in convs)
    if same_device and same_format:
        return model
    net = copy.deepcopy(model).to(device)
    if channels_last:
        net = net.to(memory_format=fmt)
    return net


def _memory_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last


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
                 tta: int = 1):
        self.views = VIEWS[check_tta(tta)]
        self.plane = plane  # one plane only (a block of distributed prediction): ``out`` has no plane axes
        self.model = model
        self.source = source
        self.out = out
        self.plans = plans
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.lows, self.highs = norm
        self.memory_format = _memory_format(len(plans)) if device.type in ("cpu", "cuda") else None
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
    def forward(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device)
        if self.memory_format is not None:
            t = t.contiguous(memory_format=self.memory_format)
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        probs = None
        for dims in self.views:  # one view after the other: the memory of one forward pass
            with autocast:
                logits = self.model(t.flip(dims) if dims else t)
            view = torch.softmax(logits.float(), dim=1)
            view = view.flip(dims) if dims else view
            probs = view if probs is None else probs.add_(view)
        if len(self.views) > 1:
            probs /= len(self.views)
        kept = tuple(slice(p.offset, p.offset + p.step) for p in self.plans)
        return probs[(slice(None), slice(None), *kept)].cpu().numpy()

    def write_batch(self, probs: np.ndarray, batch) -> None:
        for p, (plane, *tile) in zip(probs, batch):
            starts = [i * plan.step for plan, i in zip(self.plans, tile)]
            stops = [min(start + plan.step, plan.extent) for plan, start in zip(self.plans, starts)]
            where = () if self.plane is not None else plane
            window = tuple(slice(start, stop) for start, stop in zip(starts, stops))
            kept = tuple(slice(0, stop - start) for start, stop in zip(starts, stops))
            self.out[(slice(None), *where, *window)] = p[(slice(None), *kept)]

    def run(self) -> Generator[tuple[int, int], None, None]:
        jobs = self.jobs()
        batches = [jobs[i : i + self.batch_size] for i in range(0, len(jobs), self.batch_size)]
        total = len(jobs)
        done = 0
        yield done, total
        if len(batches) == 1:  # nothing to overlap
            self.write_batch(self.forward(self.load_batch(batches[0])), batches[0])
            yield total, total
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
                probs = self.forward(x)
                del x
                if pending_write is not None:
                    pending_write.result()
                pending_write = writer.submit(self.write_batch, probs, batch)
                done += len(batch)
                if done < total:
                    yield done, total
            pending_write.result()
            pending_write = None
            yield total, total
        finally:
            # on cancel (generator closed) or error: let the threads finish their current item
            reader.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
