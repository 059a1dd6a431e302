"""Batch prediction over several images, Qt-free: the Batch widget runs these generators in a
worker thread (and closes them on Stop); a script can drive them too.

:func:`batch_job` predicts in this process (tiles, whole stacks) and writes TIFFs;
:func:`cluster_batch_job` sends each image to a dask cluster (:func:`~napari_unet.predict_distributed`)
and writes OME-Zarr. Both yield ``("progress", fraction)`` and ``("result", (name, labels, path,
error))`` (``error``: the exception that kept the result from being saved, else None) and return
the number of images done.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..common.axes import channels_last_to_first
from ..common.pixel_size import prediction_pixel_size
from ..common.progress import part

__all__ = ["batch_job", "cluster_batch_job", "output_path"]


def output_path(folder, name: str, suffix: str = "_labels.tif") -> Path:
    """``folder/<name><suffix>`` with the characters unsafe in file names replaced."""
    safe = "".join(c if (c.isalnum() or c in "-_. ") else "_" for c in name).strip() or "image"
    return Path(folder) / f"{safe}{suffix}"


def _progress(gen, i: int, n: int, start: float = 0.0, share: float = 1.0):
    """``gen`` filling ``share`` of image ``i`` of ``n``'s part of the bar from ``start``, as
    ``("progress", fraction of all)``."""
    return (yield from part(gen, (i + start) / n, share / n, lambda fraction: ("progress", fraction)))


def batch_job(model, items, mode: str, device=None, cell_diameter: float | None = None, spaces=None,
              three_d: bool = False, large_cells: bool = True, tta: int | str = 1):
    """Predict ``items`` = [(name, data, axes, TIFF path or None), ...] one by one, here.

    ``cell_diameter`` overrides the model's (pixels). ``spaces``: each item's pixel sizes
    (``{"z", "y", "x"}`` µm or None): images are resampled to the model's pixel size when they
    differ. ``three_d``: z-stacks get one id per 3D object. ``large_cells``: the half-scale pass
    for cells much larger than the painted ones (:mod:`napari_unet.labels.large_cells`). ``tta``: flipped
    views averaged (:func:`~napari_unet.predict_tiled`).
    """
    from ..files.images import write_image
    from ..labels.segment import iter_segment, segment_options

    n = len(items)
    spaces = list(spaces) if spaces is not None else [None] * n
    for i, (name, data, axes, path) in enumerate(items):
        if axes.endswith("YXC"):
            data, axes = channels_last_to_first(data, axes)
        space = spaces[i]
        options = segment_options(model, mode, cell_diameter=cell_diameter, space=space, three_d=three_d, axes=axes)
        _, labels = yield from _progress(iter_segment(model, data, axes=axes, options=options, device=device,
                                                      pixel_size=prediction_pixel_size(space, model),
                                                      tta=tta, large_cells=large_cells, keep_probabilities=False), i, n)
        error = None
        if path is not None:
            try:
                write_image(path, labels, axes=axes.replace("C", ""), overwrite=True, pixel_size=space)
            except (OSError, ValueError) as exc:
                error = exc
        yield ("result", (name, labels, path, error))
        yield ("progress", (i + 1) / n)
    return n


def cluster_batch_job(model, items, mode: str, *, cluster, device=None, cell_diameter: float | None = None,
                      spaces=None, tta: int | str = 1):
    """Predict ``items`` = [(name, data, axes, OME-Zarr path or None), ...] on a dask cluster.

    ``cluster``: "local", "local:N", a scheduler address or a client (see
    :func:`napari_unet.cluster.client.connect`); one connection serves all items. An item with a path
    writes (or resumes) that OME-Zarr and its labels stay there, read lazily; one without is
    predicted into a temporary folder and its labels are read into memory.
    """
    from .client import connect
    from .distributed import iter_predict_distributed
    from ..files.ngff import open_prediction
    from ..labels.segment import segment_options

    connection = connect(cluster)
    n = len(items)
    spaces = list(spaces) if spaces is not None else [None] * n
    try:
        for i, (name, data, axes, path) in enumerate(items):
            space = spaces[i]
            options = segment_options(model, mode, cell_diameter=cell_diameter, space=space)
            if axes.endswith("YXC"):
                data, axes = channels_last_to_first(data, axes)
            scratch = None if path is not None else Path(tempfile.mkdtemp(prefix="napari-unet-cluster-"))
            out = Path(path) if path is not None else output_path(scratch, name, ".zarr")
            try:
                run = iter_predict_distributed(model, data, out, client=connection.client, axes=axes,
                                               probabilities=False, device=device, overwrite=True,
                                               label_kwargs=options,
                                               pixel_size=(space["y"], space["x"]) if space else None, tta=tta)
                try:
                    while True:
                        done, total = next(run)
                        yield ("progress", (i + (done / total if total else 0.0)) / n)
                except StopIteration:
                    pass
                finally:
                    run.close()
                labels = open_prediction(out)["labels"]
                if scratch is not None:
                    labels = labels[...]
            finally:
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
            yield ("result", (name, labels, path, None))
            yield ("progress", (i + 1) / n)
    finally:
        connection.close()
    return n
