"""Pixel sizes (micrometres per pixel): where they come from, and resampling between an image and a model.

A model trained with a known pixel size keeps it (``model.metadata["pixel_size"] = [y, x]``) and
keeps the typical cell diameter in micrometres too (``"cell_diameter_um"``). An image whose pixel
size differs from the model's by more than 5 % (:data:`TOLERANCE`) is resampled to the model's
grid for prediction and the probabilities are resampled back, so the output has exactly the
input's shape (:mod:`napari_unet.predict.tiling`). Images without a pixel size behave as before.

Pixel sizes come from the user (``pixel_size=``, ``--pixel-size``), a napari layer's ``scale``,
an OME-Zarr's multiscales, an OME-TIFF's ``PhysicalSizeX/Y/Z`` or an ImageJ TIFF's resolution
and ``spacing`` (:func:`napari_unet.files.images.read_pixel_size`).
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

__all__ = [
    "TOLERANCE",
    "MAX_RESAMPLING",
    "UNITS",
    "micrometres",
    "check_pixel_size",
    "check_voxel_size",
    "model_pixel_size",
    "pixel_size_from_scale",
    "resample_factors",
    "describe_resampling",
    "voxel_spacing",
    "resample_image",
    "resample_probabilities",
]

#: relative difference of pixel sizes below which an image is predicted as it is
TOLERANCE = 0.05
#: the largest zoom (and 1 / the smallest) between an image and a model that prediction accepts:
#: beyond it the pixel size is almost surely wrong (a unit or a resolution misread)
MAX_RESAMPLING = 16.0

#: micrometres per unit of the length units found in image metadata (OME-NGFF names the units
#: of UDUNITS-2, OME-TIFF and ImageJ use the symbols)
UNITS = {
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "micrometre": 1.0, "\\u00B5m": 1.0,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3, "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6, "pm": 1e-6, "picometer": 1e-6, "angstrom": 1e-4, "Å": 1e-4,
}


def micrometres(value: float, unit: str | None, where: str = "") -> float:
    """``value`` in ``unit`` as micrometres (no unit: micrometres); an unknown unit is an error
    naming ``where`` the value came from.

    >>> micrometres(0.0005, "millimeter"), micrometres(250, "nm")
    (0.5, 0.25)
    """
    if unit is None or unit == "":
        return float(value)
    factor = UNITS.get(str(unit).strip()) or UNITS.get(str(unit).strip().lower())
    if factor is None:
        raise ValueError(f"{where or 'the metadata'}: unknown length unit {unit!r} (known: nanometer, micrometer, "
                         "millimeter, ...); give the pixel size yourself (pixel_size= / --pixel-size)")
    return float(value) * factor


def check_pixel_size(value, name: str = "pixel_size") -> tuple[float, float] | None:
    """``(y, x)`` micrometres per pixel from a number, a pair or None (unknown).

    >>> check_pixel_size(0.5), check_pixel_size([0.3, 0.25]), check_pixel_size(None)
    ((0.5, 0.5), (0.3, 0.25), None)
    """
    if value is None:
        return None
    if isinstance(value, (str, bytes, bool)):
        raise TypeError(f"{name} must be a number or a (y, x) pair of micrometres per pixel, got {value!r}")
    if isinstance(value, numbers.Real):
        value = (value, value)
    try:
        items = [float(v) for v in value]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a (y, x) pair of micrometres per pixel, got {value!r}") from None
    if len(items) != 2:
        raise ValueError(f"{name} must be a (y, x) pair of micrometres per pixel, got {len(items)} values {value!r}")
    if not all(math.isfinite(v) and 0 < v < 1e6 for v in items):
        raise ValueError(f"{name} must be positive micrometres per pixel, got {value!r}")
    return items[0], items[1]


def check_voxel_size(value, name: str = "pixel_size") -> tuple[float, ...] | None:
    """:func:`check_pixel_size`, or ``(z, y, x)`` micrometres per voxel from three values.

    >>> check_voxel_size([2, 0.5, 0.5]), check_voxel_size(0.5)
    ((2.0, 0.5, 0.5), (0.5, 0.5))
    """
    if value is not None and not isinstance(value, (str, bytes, numbers.Real)) and hasattr(value, "__len__") \
            and len(value) == 3:
        z = check_pixel_size(value[0], f"{name}[0]")[0]
        return (z, *check_pixel_size(value[1:], name))
    return check_pixel_size(value, name)


def model_pixel_size(model) -> tuple[float, float] | None:
    """The pixel size a model was trained at, or None."""
    meta = getattr(model, "metadata", None) or {}
    return check_pixel_size(meta.get("pixel_size"), "model pixel_size")


def pixel_size_from_scale(scale: Sequence[float] | None, axes: str) -> dict | None:
    """``{"z": .., "y": .., "x": ..}`` from a napari layer's ``scale`` over the layer's ``axes``
    (channels excluded); None when the scale says nothing (all ones, napari's default)."""
    if scale is None:
        return None
    values = [float(s) for s in scale]
    spatial = [a for a in axes if a != "C"]
    if len(values) == len(axes):  # the scale covers a channel axis too (a multichannel layer)
        pairs = [(a, v) for a, v in zip(axes, values) if a != "C"]
    elif len(values) == len(spatial):  # RGB: the channel has no scale
        pairs = list(zip(spatial, values))
    else:
        return None
    if all(v == 1.0 for _, v in pairs):
        return None
    found = {ax.lower(): v for ax, v in pairs if ax in "ZYX" and math.isfinite(v) and v > 0}
    return found if "y" in found and "x" in found else None


def resample_factors(image_pixel_size, model_pixel: tuple[float, float] | None) -> tuple[float, float] | None:
    """Zoom factors (y, x) that bring an image to the model's grid, or None when either pixel size
    is unknown or they agree within :data:`TOLERANCE`.

    >>> resample_factors((0.65, 0.65), (0.325, 0.325))
    (2.0, 2.0)
    >>> resample_factors((0.33, 0.33), (0.325, 0.325)) is None
    True
    """
    image_px = check_pixel_size(image_pixel_size)
    if image_px is None or model_pixel is None:
        return None
    factors = (image_px[0] / model_pixel[0], image_px[1] / model_pixel[1])
    if all(abs(f - 1.0) <= TOLERANCE for f in factors):
        return None
    if not all(1.0 / MAX_RESAMPLING <= f <= MAX_RESAMPLING for f in factors):
        raise ValueError(
            f"the image's pixel size ({image_px[0]:.3g}, {image_px[1]:.3g}) µm is {max(factors, key=lambda f: abs(math.log(f))):.3g}"
            f" x the model's ({model_pixel[0]:.3g}, {model_pixel[1]:.3g}) µm: resampling beyond 1/{MAX_RESAMPLING:g} to "
            f"{MAX_RESAMPLING:g} x would shrink the cells to dots or blow them up (a wrong unit or resolution in the "
            "file's metadata?); give the true pixel size (pixel_size= / --pixel-size), or resample the image first")
    return factors


def describe_resampling(model, image_pixel_size) -> str:
    """What prediction will do, for a widget: "model: 0.32 µm/px, image: 0.65 µm/px, resampled x2.0"."""
    model_px = model_pixel_size(model)
    image_px = check_pixel_size(image_pixel_size)
    if model_px is None:
        return "model: pixel size unknown" + (f", image: {image_px[1]:.3g} µm/px" if image_px else "")
    if image_px is None:
        return f"model: {model_px[1]:.3g} µm/px, image: pixel size unknown (predicted as it is)"
    factors = resample_factors(image_px, model_px)
    text = f"model: {model_px[1]:.3g} µm/px, image: {image_px[1]:.3g} µm/px"
    if factors is None:
        return text + " (same grid)"
    return text + f", resampled x{math.sqrt(factors[0] * factors[1]):.2g}"


def voxel_spacing(space: dict | None) -> tuple[float, float, float]:
    """(dz, dy, dx) of pixel sizes ``{"z", "y", "x"}``: z as the xy size when unknown, cubic voxels
    when nothing is known.

    >>> voxel_spacing({"y": 0.5, "x": 0.5}), voxel_spacing(None)
    ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))
    """
    if not space:
        return (1.0, 1.0, 1.0)
    return (space.get("z", math.sqrt(space["y"] * space["x"])), space["y"], space["x"])


def resample_image(data, axes: str, factors: tuple[float, float]) -> np.ndarray:
    """``data`` (axes as named, Y and X among them) zoomed by ``factors`` along Y and X (linear,
    anti-aliased when shrinking), float32."""
    from skimage.transform import resize

    data = np.asarray(data, dtype=np.float32)
    shape = list(data.shape)
    iy, ix = axes.index("Y"), axes.index("X")
    shape[iy] = max(1, int(round(shape[iy] * factors[0])))
    shape[ix] = max(1, int(round(shape[ix] * factors[1])))
    sigma = [0.0] * data.ndim
    for i, f in ((iy, factors[0]), (ix, factors[1])):
        sigma[i] = max(0.0, (1.0 / f - 1.0) / 2.0)  # skimage's anti-aliasing sigma, Y and X only
    if any(sigma):
        from scipy import ndimage as ndi

        data = ndi.gaussian_filter(data, sigma, mode="mirror")
    return resize(data, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(np.float32)


def resample_probabilities(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Probabilities ``(n_classes, ..., y, x)`` resized to ``shape`` (Y, X), linear, summing to 1."""
    from skimage.transform import resize

    p = np.asarray(probabilities, dtype=np.float32)
    out = resize(p, (*p.shape[:-2], *shape), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    out = out.astype(np.float32, copy=False)
    out /= np.maximum(out.sum(axis=0, keepdims=True), 1e-12)
    return out
