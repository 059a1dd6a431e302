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
    "model_voxel_size",
    "volume_resample_factors",
    "prediction_pixel_size",
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
        raise ValueError(f"{name} must be positive micrometres per pixel, under a metre (1e6), got {value!r}")
    return items[0], items[1]


def check_voxel_size(value, name: str = "pixel_size") -> tuple[float, ...] | None:
    """:func:`check_pixel_size`, or ``(z, y, x)`` micrometres per voxel from three values.

    >>> check_voxel_size([2, 0.5, 0.5]), check_voxel_size(0.5)
    ((2.0, 0.5, 0.5), (0.5, 0.5))
    >>> check_voxel_size((0, 0.5, 0.5))
    Traceback (most recent call last):
    ...
    ValueError: pixel_size must be positive micrometres per pixel, under a metre (1e6), got (0.0, 0.5, 0.5)
    """
    sized = value is not None and not isinstance(value, (str, bytes, numbers.Real)) and hasattr(value, "__len__")
    if sized and len(value) == 3:
        try:
            z = check_pixel_size(value[0], f"{name}[0]")[0]
            return (z, *check_pixel_size(value[1:], name))
        except ValueError:  # name the three values given, not the pair checked
            raise ValueError(f"{name} must be positive micrometres per pixel, under a metre (1e6), "
                             f"got {tuple(float(v) for v in value)!r}") from None
    if sized and len(value) != 2:
        raise ValueError(f"{name} must be a number, a (y, x) pair or a (z, y, x) voxel of micrometres, got "
                         f"{len(value)} values {value!r}")
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
    return _checked_factors(image_px, tuple(model_pixel))


def model_voxel_size(model) -> tuple[float, float, float] | None:
    """The voxel (z, y, x) a 3D network was trained at, or None (a 2D network, or not known)."""
    meta = getattr(model, "metadata", None) or {}
    voxel = check_voxel_size(meta.get("voxel_size"), "model voxel_size")
    return voxel if voxel is not None and len(voxel) == 3 else None


def volume_resample_factors(image_voxel_size, model) -> tuple[float, float, float] | None:
    """Zoom factors (z, y, x) that bring a z-stack to a 3D network's voxel grid, or None when the
    sizes agree within :data:`TOLERANCE` or are not known. A (y, x) pair of the image, or a model
    that knows only its pixel (y, x), leaves Z as it is.

    >>> class Net: metadata = {"voxel_size": [1.0, 0.25, 0.25], "pixel_size": [0.25, 0.25]}
    >>> volume_resample_factors((0.5, 0.25, 0.25), Net()), volume_resample_factors((0.5, 0.5), Net())
    ((0.5, 1.0, 1.0), (1.0, 2.0, 2.0))
    """
    given = check_voxel_size(image_voxel_size)
    try:
        own = model_voxel_size(model) or model_pixel_size(model)
    except (TypeError, ValueError):  # sizes the model file got wrong: predicted as it is
        own = None
    if given is None or own is None:
        return None
    n = min(len(given), len(own))
    factors = _checked_factors(given[-n:], own[-n:])
    return None if factors is None else (1.0,) * (3 - n) + factors


def prediction_pixel_size(space: dict | None, model) -> tuple[float, ...] | None:
    """The ``pixel_size`` prediction takes for ``model`` from an image's sizes ``{"z", "y", "x"}``
    (µm): (z, y, x) for a 3D network when the z-step is known, else (y, x); None when unknown.

    >>> class Net3D: config = type("Config", (), {"spatial_dims": 3})
    >>> prediction_pixel_size({"z": 1.0, "y": 0.25, "x": 0.25}, Net3D()), prediction_pixel_size({"y": 0.5, "x": 0.5}, Net3D())
    ((1.0, 0.25, 0.25), (0.5, 0.5))
    """
    if not space or "y" not in space or "x" not in space:
        return None
    if getattr(getattr(model, "config", None), "spatial_dims", 2) == 3 and "z" in space:
        return (space["z"], space["y"], space["x"])
    return (space["y"], space["x"])


def _checked_factors(image: tuple[float, ...], model: tuple[float, ...]) -> tuple[float, ...] | None:
    """``image / model`` per axis; None within :data:`TOLERANCE`; ValueError beyond :data:`MAX_RESAMPLING`."""
    factors = tuple(a / b for a, b in zip(image, model))
    if all(abs(f - 1.0) <= TOLERANCE for f in factors):
        return None
    if not all(1.0 / MAX_RESAMPLING <= f <= MAX_RESAMPLING for f in factors):
        size = "pixel" if len(image) == 2 else "voxel"

        def sizes(values):
            return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
        raise ValueError(
            f"the image's {size} size {sizes(image)} µm is {max(factors, key=lambda f: abs(math.log(f))):.3g}"
            f" x the model's {sizes(model)} µm: resampling beyond 1/{MAX_RESAMPLING:g} to "
            f"{MAX_RESAMPLING:g} x would shrink the cells to dots or blow them up (a wrong unit or resolution in the "
            "file's metadata?); give the true pixel size (pixel_size= / --pixel-size), or resample the image first")
    return factors


def describe_resampling(model, image_pixel_size) -> str:
    """What prediction will do, for a widget: "model: 0.32 µm/px, image: 0.65 µm/px, resampled x2.0";
    a 3D network and a (z, y, x) voxel: "model: 1 x 0.25 x 0.25 µm, image: 0.5 x 0.25 x 0.25 µm,
    resampled x0.5 x1 x1" (z, y, x)."""
    voxel, image = model_voxel_size(model), check_voxel_size(image_pixel_size)
    if voxel is not None and image is not None and len(image) == 3:
        text = f"model: {' x '.join(f'{v:.3g}' for v in voxel)} µm, image: {' x '.join(f'{v:.3g}' for v in image)} µm"
        try:
            factors = volume_resample_factors(image, model)
        except ValueError:
            return text + f", beyond {MAX_RESAMPLING:g} x: refused"
        return text + (" (same grid)" if factors is None else ", resampled " + " ".join(f"x{f:.2g}" for f in factors))
    model_px = model_pixel_size(model)
    image_px = check_pixel_size(image[-2:] if image is not None else None)
    if model_px is None:
        return "model: pixel size unknown" + (f", image: {image_px[1]:.3g} µm/px" if image_px else "")
    if image_px is None:
        return f"model: {model_px[1]:.3g} µm/px, image: pixel size unknown (predicted as it is)"
    text = f"model: {model_px[1]:.3g} µm/px, image: {image_px[1]:.3g} µm/px"
    try:
        factors = resample_factors(image_px, model_px)
    except ValueError:  # said here, refused with the reason when predicting
        return text + f", beyond {MAX_RESAMPLING:g} x: refused"
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


def resample_image(data, axes: str, factors: tuple[float, ...]) -> np.ndarray:
    """``data`` (axes as named) zoomed by ``factors`` along Y and X, or along Z, Y and X for three
    factors (linear, anti-aliased when shrinking), float32."""
    from skimage.transform import resize

    data = np.asarray(data, dtype=np.float32)
    shape = list(data.shape)
    sigma = [0.0] * data.ndim
    for ax, f in zip("ZYX"[-len(factors):], factors):
        i = axes.index(ax)
        shape[i] = max(1, int(round(shape[i] * f)))
        sigma[i] = max(0.0, (1.0 / f - 1.0) / 2.0)  # skimage's anti-aliasing sigma, resampled axes only
    if any(sigma):
        from scipy import ndimage as ndi

        data = ndi.gaussian_filter(data, sigma, mode="mirror")
    return resize(data, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(np.float32)


def resample_probabilities(probabilities: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Probabilities ``(n_classes, ..., y, x)`` resized to ``shape`` (its last axes: (Y, X), or
    (Z, Y, X)), linear, summing to 1."""
    from skimage.transform import resize

    p = np.asarray(probabilities, dtype=np.float32)
    shape = tuple(int(n) for n in shape)
    out = resize(p, (*p.shape[:-len(shape)], *shape), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    out = out.astype(np.float32, copy=False)
    out /= np.maximum(out.sum(axis=0, keepdims=True), 1e-12)
    return out
