"""The tile engine of overlap-tile prediction (:mod:`napari_unet.tiling`): runs the tiles of a
source through the network, optionally averaging flipped views of each tile, and writes the kept
windows into the output.

Flipped views (test-time augmentation, ``tta``): every tile input is a valid network input whose
size before each 2x2 max-pool is even, and the kept window is centred in the network output, so a
tile flipped along Y and / or X meets the same pooling windows, mirrored, and its output flipped
back covers exactly the same pixels. Averaging the softmax of the views is therefore done tile by
tile, and a tile's result still depends only on its own input: prediction stays seamless, and
blocks of :func:`~napari_unet.tiling.predict_block` still equal the whole image.
"""

from __future__ import annotations

import contextlib
import copy
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generator

import numpy as np
import torch

from .model import UNet
from .normalization import apply_normalization
from .sources import Source
from .tile_plan import mirror_indices
from .views import VIEWS, check_tta

__all__ = ["TileEngine", "prepare_model"]


def prepare_model(model: UNet, device: torch.device, channels_last: bool) -> UNet:
    """The network on ``device`` with channels_last weights where that is faster (CPU, CUDA).

    The caller's model is never changed: when it is on another device or in another memory
    format, a copy is used (one copy per call, negligible next to the prediction itself).
    """
    try:
        current = next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a UNet always has parameters
        current = device
    same_device = current == device or (current.type == device.type and device.index is None)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    same_format = not channels_last or all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    if same_device and same_format:
        return model
    net = copy.deepcopy(model).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


class TileEngine:
    """Runs the tiles of one source through the network and writes the kept windows into ``out``."""

    def __init__(self, model, source: Source, out, plan_y, plan_x, *, device, dtype, batch_size, norm, plane=None,
                 tta: int = 1):
        self.views = VIEWS[check_tta(tta)]
        self.plane = plane  # one plane only (a block of distributed prediction): ``out`` has no plane axes
        self.model = model
        self.source = source
        self.out = out
        self.plan_y = plan_y
        self.plan_x = plan_x
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.lows, self.highs = norm
        self.channels_last = device.type in ("cpu", "cuda")
        self.check_finite = np.dtype(source.data.dtype).kind == "f"

    def jobs(self) -> list[tuple[tuple[int, ...], int, int]]:
        if self.plane is not None:
            planes = [self.plane]
        else:
            planes = list(np.ndindex(*self.source.plane_shape)) if self.source.plane_shape else [()]
        return [
            (plane, ty, tx)
            for plane in planes
            for ty in range(self.plan_y.count)
            for tx in range(self.plan_x.count)
        ]

    def _read_tile(self, plane, ty: int, tx: int) -> np.ndarray:
        iy = mirror_indices(self.plan_y.input_start(ty), self.plan_y.input_start(ty) + self.plan_y.tile, self.plan_y.size)
        ix = mirror_indices(self.plan_x.input_start(tx), self.plan_x.input_start(tx) + self.plan_x.tile, self.plan_x.size)
        y0, y1 = int(iy.min()), int(iy.max()) + 1
        x0, x1 = int(ix.min()), int(ix.max()) + 1
        block = self.source.read(plane, slice(y0, y1), slice(x0, x1))
        if not (y1 - y0 == len(iy) and iy[0] == y0 and np.all(np.diff(iy) == 1)):
            block = block[:, iy - y0]
        if not (x1 - x0 == len(ix) and ix[0] == x0 and np.all(np.diff(ix) == 1)):
            block = block[:, :, ix - x0]
        if self.check_finite and not np.isfinite(block).all():
            where = f"plane {plane}, " if plane else ""
            _, by, bx = np.argwhere(~np.isfinite(block))[0]  # the first one, in the image's pixels
            raise ValueError(
                f"the image contains NaN or infinite values ({where}at y={int(iy[by])}, x={int(ix[bx])}); "
                "expected finite numbers: replace them first, e.g. with np.nan_to_num"
            )
        return apply_normalization(block, self.lows, self.highs, channel_axis=0)

    def load_batch(self, batch) -> np.ndarray:
        x = np.empty((len(batch), self.source.n_channels, self.plan_y.tile, self.plan_x.tile), np.float32)
        for i, (plane, ty, tx) in enumerate(batch):
            x[i] = self._read_tile(plane, ty, tx)
        return x

    @torch.inference_mode()
    def forward(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
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
        oy, ox = self.plan_y.offset, self.plan_x.offset
        return probs[:, :, oy : oy + self.plan_y.step, ox : ox + self.plan_x.step].cpu().numpy()

    def write_batch(self, probs: np.ndarray, batch) -> None:
        for p, (plane, ty, tx) in zip(probs, batch):
            y0 = ty * self.plan_y.step
            x0 = tx * self.plan_x.step
            y1 = min(y0 + self.plan_y.step, self.plan_y.extent)
            x1 = min(x0 + self.plan_x.step, self.plan_x.extent)
            where = () if self.plane is not None else plane
            self.out[(slice(None), *where, slice(y0, y1), slice(x0, x1))] = p[:, : y1 - y0, : x1 - x0]

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
