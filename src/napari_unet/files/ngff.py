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

import math
from pathlib import Path
from typing import Sequence

from .safe_write import RUN_DIR

__all__ = [
    "LABELS_PATH",
    "PROBABILITIES_PATH",
    "create_prediction_group",
    "first_multiscale",
    "foreign_entries",
    "mark_complete",
    "ngff_scale",
    "open_prediction",
    "write_prediction_metadata",
]

PROBABILITIES_PATH = "probabilities"
#: micrometres per pixel (voxel side) that metadata may plausibly say: 0.1 nm to 1 cm
PLAUSIBLE_UM = (1e-4, 1e4)
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
    from .._version import __version__
    from .safe_write import OWNER_ATTR

    group = _zarr_group(path, "a")
    if OWNER_ATTR not in group.attrs:
        group.attrs[OWNER_ATTR] = {"version": __version__}  # overwrite may replace what bears it
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
    """Mark a prediction output complete (:func:`napari_unet.files.images.is_complete_image` is True)."""
    from .safe_write import COMPLETE_ATTR

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


def first_multiscale(attrs: dict, path) -> dict | None:
    """The first multiscale image of a zarr group's attributes (NGFF 0.4, or 0.5 under "ome"):
    ``{"path": dataset path, "axes": [names], "types": [...], "units": [...], "scale": [per axis]}``,
    the scale composing the dataset's and the multiscale's own transformations, as NGFF defines
    it. None when the group declares no multiscales; ValueError naming ``path`` and the defect
    when the metadata is malformed."""
    ome = attrs.get("ome")
    multiscales = attrs.get("multiscales") or (ome.get("multiscales") if isinstance(ome, dict) else None)
    if not multiscales:
        return None
    where = f"{path}: OME-Zarr metadata"
    if not isinstance(multiscales, list) or not isinstance(multiscales[0], dict):
        raise ValueError(f"{where}: 'multiscales' must be a list of objects, got {type(multiscales).__name__}")
    ms = multiscales[0]
    datasets = ms.get("datasets")
    if (not isinstance(datasets, list) or not datasets or not isinstance(datasets[0], dict)
            or not isinstance(datasets[0].get("path"), str) or not datasets[0]["path"]):
        raise ValueError(f"{where} names no dataset (multiscales[0].datasets[0].path is missing)")
    axes = ms.get("axes") or []
    if not isinstance(axes, list):
        raise ValueError(f"{where}: 'axes' must be a list, got {type(axes).__name__}")
    names, types, units = [], [], []
    for i, axis in enumerate(axes):
        name = axis.get("name") if isinstance(axis, dict) else axis
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: axis {i} has no name")
        names.append(name.lower())
        types.append(axis.get("type") if isinstance(axis, dict) else None)
        units.append(axis.get("unit") if isinstance(axis, dict) else None)
    scale = None  # no scale transformation: the pixel size is unknown, not 1
    for transforms in (datasets[0].get("coordinateTransformations"), ms.get("coordinateTransformations")):
        if transforms is not None and not isinstance(transforms, list):
            raise ValueError(f"{where}: 'coordinateTransformations' must be a list, got {type(transforms).__name__}")
        for transform in transforms or []:
            if isinstance(transform, dict) and transform.get("type") == "scale":
                factors = transform.get("scale")
                if not isinstance(factors, list) or len(factors) != len(names):
                    raise ValueError(f"{where}: a scale transformation of {factors!r} does not give one factor "
                                     f"per axis ({len(names)})")
                for name, factor in zip(names, factors):
                    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
                        raise ValueError(f"{where}: the scale of axis {name!r} is {factor!r}, not a number")
                scale = [a * float(b) for a, b in zip(scale or [1.0] * len(names), factors)]
    return {"path": datasets[0]["path"], "axes": names, "types": types, "units": units, "scale": scale}


def ngff_scale(path) -> dict | None:
    """Micrometres per pixel of an OME-Zarr image's first resolution level, e.g. ``{"y": 0.3,
    "x": 0.3}`` (space axes only), from its multiscales metadata (axis units converted, the
    dataset's and the multiscale's scales composed); None when it holds none."""
    import zarr

    from ..common.pixel_size import micrometres

    path = Path(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception:  # not a zarr we can read: no scale
        return None
    ms = first_multiscale(dict(node.attrs), path)
    if ms is None or not ms["axes"] or ms["scale"] is None:
        return None
    scale = {}
    for name, kind, unit, factor in zip(ms["axes"], ms["types"], ms["units"], ms["scale"]):
        if kind == "space" or (kind is None and name in "zyx"):
            if not (math.isfinite(factor) and factor > 0):
                raise ValueError(f"{path}: OME-Zarr axis {name!r} has a scale of {factor!r} (not a positive number); "
                                 "give the pixel size yourself (pixel_size= / --pixel-size)")
            if not unit:
                raise ValueError(f"{path}: OME-Zarr axis {name!r} gives a scale of {factor!r} without a unit; give the "
                                 "pixel size yourself (pixel_size= / --pixel-size)")
            value = micrometres(factor, unit, f"{path}: OME-Zarr axis {name!r}")
            if not PLAUSIBLE_UM[0] <= value <= PLAUSIBLE_UM[1]:
                raise ValueError(f"{path}: OME-Zarr axis {name!r} says {factor!r} {unit} per pixel ({value:.3g} µm), "
                                 f"outside {PLAUSIBLE_UM[0]:g}-{PLAUSIBLE_UM[1]:g} µm; give the pixel size yourself "
                                 "(pixel_size= / --pixel-size)")
            scale[name] = value
    return scale or None


_OWN_ENTRIES = {".zattrs", ".zgroup", "zarr.json", RUN_DIR, PROBABILITIES_PATH, "labels", "labels/.zattrs",
                "labels/.zgroup", "labels/zarr.json", "labels/cells"}


def foreign_entries(path) -> list[str]:
    """What lies in a prediction output that napari-unet does not write there (e.g. labels a user
    corrected and saved beside ours): an overwrite would remove them."""
    found = []
    for entry in sorted(Path(path).iterdir()):
        if entry.name == "labels" and entry.is_dir():
            found += [f"labels/{e.name}" for e in sorted(entry.iterdir()) if f"labels/{e.name}" not in _OWN_ENTRIES]
        elif entry.name not in _OWN_ENTRIES:
            found.append(entry.name)
    return found
