"""OME-Zarr (NGFF 0.4) metadata: the pixel scale of an input, the layout of a prediction output.

A prediction written by :func:`napari_unet.predict_distributed` is one zarr group (zarr format 2,
as NGFF 0.4 asks) that napari, napari-ome-zarr, Fiji's MoBIE / BigDataViewer and other viewers
open directly::

    out.zarr/
        probabilities         float32 (c, [t, z,] y, x): the image of the multiscales at the root
        labels/               the NGFF "labels" group: {"labels": ["cells"]}
            cells/            a label image (multiscales + "image-label")
                0             uint32 ([t, z,] y, x), ids unique over the whole stack

Only the metadata is written here (with zarr); the arrays are zarr arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = [
    "LABELS_PATH",
    "PROBABILITIES_PATH",
    "create_prediction_group",
    "mark_complete",
    "ngff_scale",
    "open_prediction",
    "write_prediction_metadata",
]

PROBABILITIES_PATH = "probabilities"
LABELS_PATH = "labels/cells/0"
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def _zarr_group(path, mode: str):
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        return zarr.open_group(str(path), mode=mode, zarr_format=2)
    return zarr.open_group(str(path), mode=mode)  # pragma: no cover - zarr 2


def _create_array(group, name: str, *, shape, chunks, dtype):
    if hasattr(group, "create_array"):
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)  # pragma: no cover


def create_prediction_group(path, *, n_classes: int, plane_shape: Sequence[int], image_shape: Sequence[int],
                            block_shape: Sequence[int], labels: bool = True) -> None:
    """Create (or open, when it exists) the arrays of a prediction output, chunked by block.

    Every chunk holds exactly one block (one plane, ``block_shape`` pixels in Y, X), so blocks
    write whole chunks, never a chunk shared with another block.
    """
    group = _zarr_group(path, "a")
    plane_shape = tuple(int(s) for s in plane_shape)
    yx = tuple(int(s) for s in image_shape)
    block = tuple(min(int(b), s) for b, s in zip(block_shape, yx))
    shape = (int(n_classes), *plane_shape, *yx)
    if PROBABILITIES_PATH not in group:
        _create_array(group, PROBABILITIES_PATH, shape=shape, chunks=(int(n_classes), *(1,) * len(plane_shape), *block),
                      dtype="float32")
    if labels and "labels" not in group:
        cells = group.require_group("labels").require_group("cells")
        _create_array(cells, "0", shape=(*plane_shape, *yx), chunks=(*(1,) * len(plane_shape), *block), dtype="uint32")


def _axes(axes: str, scale: dict | None) -> list[dict]:
    out = []
    for ax in axes.lower():
        entry = {"name": ax, "type": _AXIS_TYPES.get(ax, "space")}
        if entry["type"] == "space" and scale and ax in scale:
            entry["unit"] = "micrometer"
        out.append(entry)
    return out


def _multiscales(name: str, axes: str, path: str, scale: dict | None) -> list[dict]:
    factors = [float((scale or {}).get(ax, 1.0)) if _AXIS_TYPES.get(ax) == "space" else 1.0 for ax in axes.lower()]
    return [{
        "version": "0.4",
        "name": name,
        "axes": _axes(axes, scale),
        "datasets": [{"path": path, "coordinateTransformations": [{"type": "scale", "scale": factors}]}],
    }]


def write_prediction_metadata(path, *, axes: str, scale: dict | None = None, probabilities: bool = True,
                              labels: bool = True, attrs: dict | None = None) -> None:
    """NGFF 0.4 metadata of a prediction output; ``axes`` are the non-channel axes, e.g. ``"ZYX"``;
    ``scale`` maps lower-case axis names to micrometres per pixel (``{"y": 0.3, "x": 0.3}``)."""
    group = _zarr_group(path, "a")
    root = dict(attrs or {})
    if probabilities:
        root["multiscales"] = _multiscales("probabilities", "c" + axes, PROBABILITIES_PATH, scale)
    group.attrs.update(root)
    if labels:
        group["labels"].attrs.update({"labels": ["cells"]})
        cells = group["labels"]["cells"]
        cells.attrs.update({
            "multiscales": _multiscales("cells", axes, "0", scale),
            "image-label": {"version": "0.4", "source": {"image": "../../"}},
        })


def mark_complete(path) -> None:
    """Mark a prediction output complete (:func:`napari_unet.images.is_complete_image` is True)."""
    from .outputs import COMPLETE_ATTR

    _zarr_group(path, "a").attrs[COMPLETE_ATTR] = True


def open_prediction(path, mode: str = "r") -> dict:
    """The arrays of a prediction output: ``{"probabilities": ..., "labels": ...}`` (those present);
    ``mode="r+"`` to write into them."""
    group = _zarr_group(path, mode)
    found = {}
    if PROBABILITIES_PATH in group:
        found["probabilities"] = group[PROBABILITIES_PATH]
    if "labels" in group and "cells" in group["labels"]:
        found["labels"] = group["labels"]["cells"]["0"]
    return found


def ngff_scale(path) -> dict | None:
    """Micrometres per pixel of an OME-Zarr image's first resolution level, e.g. ``{"y": 0.3,
    "x": 0.3}`` (space axes only), from its multiscales metadata; None when it holds none."""
    import zarr

    path = Path(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception:  # not a zarr we can read: no scale
        return None
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        return None
    ms = multiscales[0]
    names = [(a["name"] if isinstance(a, dict) else a).lower() for a in ms.get("axes", [])]
    types = [(a.get("type") if isinstance(a, dict) else _AXIS_TYPES.get(str(a).lower())) for a in ms.get("axes", [])]
    factors = None
    for transform in ms["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            factors = transform.get("scale")
    if not factors or len(factors) != len(names):
        return None
    scale = {n: float(f) for n, t, f in zip(names, types, factors) if t == "space" or n in "zyx"}
    return scale or None
