"""Image files: TIFF (ImageJ hyperstacks, OME-TIFF, plain) with tifffile, zarr (plain or OME-Zarr).

:func:`read_image` names the axes over ``"TZCYX"``; :func:`write_image` never replaces an existing
file unless ``overwrite=True`` and makes an output visible only once complete (a zarr is also
marked complete, :func:`is_complete_image`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..common.axes import CANONICAL, canonical_axes, guess_axes, to_canonical
from ..common.pixel_size import UNITS as _UNITS
from .safe_write import COMPLETE_ATTR, default_permissions, exists_error, temporary_sibling

logger = logging.getLogger(__name__)

__all__ = ["read_image", "write_image", "is_complete_image", "is_zarr_path", "read_pixel_size"]


def is_zarr_path(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or (path.is_dir() and any(
        (path / name).exists() for name in (".zarray", ".zgroup", "zarr.json")))


def read_image(path) -> tuple[Any, str]:
    """Read an image file and name its axes.

    Parameters
    ----------
    path : str or Path
        A TIFF file (ImageJ hyperstack, OME-TIFF or plain) or a zarr array / group
        (``.zarr``; for a group the first array, e.g. level ``"0"`` of an OME-Zarr).

    Returns
    -------
    data : np.ndarray or zarr.Array
        The image, axes ordered as in ``"TZCYX"`` (RGB samples become ``C``). A zarr array
        whose axes are already in that order is returned lazily.
    axes : str
        E.g. ``"YX"``, ``"CYX"``, ``"ZYX"``, ``"TZCYX"``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if is_zarr_path(path):
        return _read_zarr(path)
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            data = series.asarray()
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        if path.suffix.lower() not in (".tif", ".tiff", ".btf", ".tf8"):
            raise ValueError(f"cannot read {path}: expected a TIFF file or a .zarr folder ({exc})") from None
        raise ValueError(f"cannot read TIFF {path}: {exc}") from None
    if len(axes) != data.ndim:
        axes = guess_axes(data.shape)
    return to_canonical(data, axes)


def _read_zarr(path: Path):
    import zarr

    node = zarr.open(str(path), mode="r")
    axes = None
    if not hasattr(node, "shape"):  # a group
        from .ngff import first_multiscale

        ms = first_multiscale(dict(node.attrs), path)
        name = None
        if ms is not None:
            name = ms["path"]
            if name not in node:
                raise ValueError(f"{path}: its OME-Zarr metadata names the dataset {name!r}, which the group does not hold")
            if ms["axes"]:
                axes = "".join(a[0].upper() for a in ms["axes"])
        if name is None:
            arrays = sorted(k for k, _ in node.arrays())
            if not arrays:
                raise ValueError(f"zarr group {path} holds no array")
            name = arrays[0]
        node = node[name]
    if axes is None:
        axes = node.attrs.get("axes") or node.attrs.get("_ARRAY_DIMENSIONS")
        if isinstance(axes, (list, tuple)):
            axes = "".join(str(a)[0].upper() for a in axes)
    if axes and len(axes) != node.ndim:
        logger.warning("%s: its metadata names %d axes (%s) for an array of %d dimensions; using %s", path, len(axes),
                       axes, node.ndim, guess_axes(node.shape))
    if not axes or len(axes) != node.ndim:
        axes = guess_axes(node.shape)
    canonical = canonical_axes(axes, node.shape)
    if sorted(canonical, key=CANONICAL.index) == list(canonical):
        return node, canonical
    return to_canonical(np.asarray(node[...]), axes)


def write_image(path, data, axes: str | None = None, overwrite: bool = False, pixel_size: dict | None = None) -> Path:
    """Write an image as TIFF (ImageJ-compatible where possible) or zarr (``.zarr`` path).

    Parameters
    ----------
    path : str or Path
        ``*.tif`` / ``*.tiff`` or ``*.zarr``.
    data : array-like
        The image (labels, probabilities, ...).
    axes : str, optional
        Axis names, e.g. ``"ZYX"`` or ``"CYX"``; default from the number of dimensions.
    overwrite : bool
        Replace an existing file; otherwise a :class:`FileExistsError` is raised.
    pixel_size : dict, optional
        ``{"z", "y", "x"}`` micrometres (as :func:`read_pixel_size` gives them): an ImageJ TIFF
        records them (resolution, unit, and the z spacing of a stack), so the output keeps the
        input's scale in napari and Fiji. Plain zarr arrays record none.

    Notes
    -----
    TIFF: ImageJ hyperstacks hold 8/16-bit integers and 32-bit floats in ``TZCYX`` order, so
    integer labels are stored as ``uint16`` when they fit (else a plain TIFF with the axes in
    its metadata), float64 as float32. The file is written to a temporary name and renamed.
    """
    path = Path(path)
    data = np.asarray(data) if not hasattr(data, "dtype") else data
    axes = (axes or guess_axes(data.shape)).upper()
    if len(axes) != len(data.shape):
        raise ValueError(f"axes {axes!r} do not match an image of shape {tuple(data.shape)}")
    if path.exists() and not overwrite:
        raise exists_error(path)
    if path.suffix.lower() == ".zarr":
        return _write_zarr(path, data, axes, overwrite)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"unsupported output format {path.suffix!r}; use .tif, .tiff or .zarr")
    import tifffile

    data = np.asarray(data)
    imagej = all(a in CANONICAL for a in axes) and list(axes) == sorted(axes, key=CANONICAL.index)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    elif data.dtype.kind in "iu":
        lo = int(data.min()) if data.size else 0
        hi = int(data.max()) if data.size else 0
        if 0 <= lo and hi <= 255 and data.dtype.itemsize == 1:
            data = data.astype(np.uint8, copy=False)
        elif 0 <= lo and hi <= 65535:
            data = data.astype(np.uint16, copy=False)
        else:
            imagej = False
    elif data.dtype.kind == "f":
        data = data.astype(np.float32, copy=False)
    else:
        imagej = False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, ".tmp.tif")
    try:
        kwargs: dict[str, Any] = {"metadata": {"axes": axes}}
        if imagej:
            kwargs["imagej"] = True
            if pixel_size and "y" in pixel_size and "x" in pixel_size:
                kwargs["resolution"] = (1.0 / float(pixel_size["x"]), 1.0 / float(pixel_size["y"]))
                kwargs["metadata"]["unit"] = "um"
                if "z" in pixel_size and "Z" in axes:
                    kwargs["metadata"]["spacing"] = float(pixel_size["z"])
        if data.nbytes > 2**32 - 2**25:
            kwargs["bigtiff"] = True
            kwargs.pop("imagej", None)
            kwargs.pop("resolution", None)  # without ImageJ's unit it would read as inches
        kwargs["compression"] = None
        tifffile.imwrite(tmp, data, **kwargs)
        if path.exists() and not overwrite:  # appeared meanwhile
            raise exists_error(path)
        default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path




def _write_zarr(path: Path, data, axes: str, overwrite: bool) -> Path:
    """Write into a hidden folder beside ``path``, mark it complete, then rename it into place:
    a reader (or ``--skip-existing``) never sees a half-written array."""
    import zarr

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(temporary_sibling(path, ".tmp.zarr"))
    tmp.unlink()
    old = None
    try:
        shape = tuple(int(s) for s in data.shape)
        chunks = tuple(min(s, 1 if i < len(shape) - 2 else 512) for i, s in enumerate(shape))
        arr = zarr.open_array(str(tmp), mode="w", shape=shape, dtype=np.dtype(data.dtype), chunks=chunks)
        arr[...] = np.asarray(data)
        arr.attrs["axes"] = axes
        arr.attrs[COMPLETE_ATTR] = True
        if path.exists():
            if not overwrite:
                raise exists_error(path)
            old = Path(temporary_sibling(path, ".old"))
            old.unlink()
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    return path


def is_complete_image(path) -> bool:
    """True when ``path`` is an image written completely (a TIFF that opens, a zarr marked complete)."""
    path = Path(path)
    if not path.exists():
        return False
    if path.suffix.lower() == ".zarr":
        try:
            import zarr

            return bool(zarr.open(str(path), mode="r").attrs.get(COMPLETE_ATTR, False))
        except Exception:  # any unreadable zarr is incomplete
            return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return len(tif.series) > 0 and all(s > 0 for s in tif.series[0].shape)
    except Exception:  # any unreadable TIFF is incomplete
        return False


def _tiff_pixel_size(path: Path) -> dict | None:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tif.ome_metadata)
            for pixels in root.iter():
                if pixels.tag.endswith("Pixels"):
                    found = {}
                    for ax in "ZYX":
                        value = pixels.get(f"PhysicalSize{ax}")
                        unit = pixels.get(f"PhysicalSize{ax}Unit", "µm")
                        if value is not None and unit in _UNITS:
                            found[ax.lower()] = float(value) * _UNITS[unit]
                    return found if "y" in found and "x" in found else None
        page = tif.pages[0]
        meta = tif.imagej_metadata or {}
        unit = str(meta.get("unit", "")).replace("\\u00B5", "µ")
        tags = page.tags
        if unit not in _UNITS or "XResolution" not in tags or "YResolution" not in tags:
            return None
        xr, yr = tags["XResolution"].value, tags["YResolution"].value
        found = {"y": yr[1] / yr[0] * _UNITS[unit], "x": xr[1] / xr[0] * _UNITS[unit]}
        if "spacing" in meta:
            found["z"] = float(meta["spacing"]) * _UNITS[unit]
        return found


def read_pixel_size(path) -> dict | None:
    """Micrometres per pixel recorded in an image file (``{"z": .., "y": .., "x": ..}``, z when
    known), or None: OME-Zarr multiscales, OME-TIFF, ImageJ TIFF (resolution, unit, spacing)."""
    from .ngff import PLAUSIBLE_UM, ngff_scale

    path = Path(path)
    try:
        scale = ngff_scale(path) if is_zarr_path(path) else _tiff_pixel_size(path)
        if not scale or "y" not in scale or "x" not in scale:
            return None
        low, high = PLAUSIBLE_UM
        bad = {ax: v for ax, v in scale.items() if not (math.isfinite(v) and low <= v <= high)}
        if bad.keys() & {"y", "x"}:
            raise ValueError(f"pixel size {bad} µm is not a number from {low:g} to {high:g}")
        if bad:  # a z-spacing of 0 or NaN: the xy size stands
            logger.warning("ignoring the z-spacing %s µm recorded in %s (not a number from %g to %g)", bad["z"], path,
                           low, high)
            scale = {ax: v for ax, v in scale.items() if ax not in bad}
        return scale
    except (OSError, ValueError, KeyError, ZeroDivisionError, TypeError) as exc:
        # unreadable metadata: no pixel size, as for a file without one, but said
        logger.warning("ignoring the pixel size recorded in %s: %s", path, exc)
        return None
