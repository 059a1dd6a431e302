"""3D data augmentation for the 3D U-Net (Çiçek et al. 2016), in torch, batch-wise, on the CPU or GPU.

The volume counterpart of :mod:`napari_unet.dataset.augment`: all geometric operations of one sample --
a rotation in the XY plane (random multiples of 90 degrees plus a free angle), flips of X, Y and
Z, an isotropic scale (Z included: it stands for cells of another size, and a cell is larger
in Z too), a shift and an elastic deformation (random displacements on a coarse 3D grid,
tricubically upsampled) -- are composed into ONE sampling grid, and each tensor is resampled
ONCE with ``grid_sample``: the image trilinearly, target and weights together with
nearest-neighbour sampling (a weight stays attached to the class of the same source voxel, and
a voxel of an unpainted slice never lends its zero weight or its target to a painted one).
Points outside the input are mirrored; :func:`volume_margin` tells a sampler how much real
context to pass. Gray-value changes (:func:`napari_unet.dataset.augment.gray_values`) touch the image
only. Every random number comes from the ``torch.Generator`` passed in.

Voxels may be anisotropic (``spacing = (dz, dy, dx)``): the geometry is built in physical
lengths measured in Y pixels, so the rotation, the scale, the shift (``shift_pixels``) and the
elastic displacements (std ``elastic_sigma``) have the same physical length along every axis,
e.g. ``elastic_sigma * dy / dz`` voxels along Z. Output voxel ``(k, i, j)``, centred
coordinates ``p = (j - (X_out - 1) / 2, i - (Y_out - 1) / 2, k - (Z_out - 1) / 2)`` in (x, y, z)
order, reads the input at::

    centre_in + S^-1 (M (S p + e(p)) + t),   S = diag(dx, dy, dz) / dy,   M = s R_xy(theta) D

with ``D`` the flips (diagonal, +-1), ``R_xy`` the rotation about Z, ``s`` the scale, ``e`` the
elastic field (physical, defined on the output grid) and ``t`` the shift.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..config import AugmentConfig
from .augment import (bicubic_matrix, deformation_reach, gray_values, scale_shift_field, unmoved, xy_reach,
                      xy_rotation)

__all__ = ["augment_volume_batch", "volume_margin"]


def _relative_spacing(spacing) -> np.ndarray:
    """Voxel size in (x, y, z) order, in units of the Y pixel size."""
    if spacing is None:
        return np.ones(3)
    try:
        dz, dy, dx = (float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be three voxel sizes (dz, dy, dx), got {spacing!r}") from None
    if not all(math.isfinite(s) and s > 0 for s in (dz, dy, dx)):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return np.array([dx, dy, dz]) / dy


def _shape3(name: str, shape, default) -> tuple[int, int, int]:
    if shape is None:
        return tuple(default)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name} must be three positive sizes (Z, Y, X), got {shape}")
    return shape


def _random_geometry(batch: int, config: AugmentConfig, generator, rel: np.ndarray) -> dict:
    """Per-sample geometry in input voxels (numpy float64, (x, y, z) order): matrix (B,3,3) acting
    on output voxel offsets, field_matrix (B,3,3) acting on the physical field (B,3,n,n,n), shift (B,3).

    The same random numbers are drawn whatever the switches (as in 2D)."""
    u = torch.rand(batch, 9, generator=generator, dtype=torch.float64).numpy()
    n = int(config.elastic_grid)
    field = torch.randn(batch, 3, n, n, n, generator=generator, dtype=torch.float64).numpy()
    matrix = np.broadcast_to(np.eye(3), (batch, 3, 3)).copy()
    changed = False
    if config.flip:
        matrix = matrix * np.where(u[:, None, 0:3] < 0.5, -1.0, 1.0)  # flip x, y and / or z
        changed = True
    c, s, rotated = xy_rotation(config, u[:, 3], u[:, 4])
    changed = changed or rotated
    rot = np.zeros((batch, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    matrix = rot @ matrix
    matrix, shift, field, scaled = scale_shift_field(config, matrix, u[:, 5], u[:, 6:9], field)
    changed = changed or scaled
    to_voxels = (1.0 / rel)[None, :, None]
    return {"matrix": to_voxels * matrix * rel[None, None, :], "field_matrix": to_voxels * matrix,
            "shift": shift / rel, "field": field, "changed": changed}


def _sampling_grid(geometry: dict, out_shape, in_shape, device, dtype) -> torch.Tensor:
    """(B, Z_out, Y_out, X_out, 3) grid for ``grid_sample(..., align_corners=False)``: one
    ``affine_grid`` plus the elastic field, transformed on its coarse grid and upsampled by
    three small matrix products (separable cubic interpolation)."""
    d_out, h_out, w_out = out_shape
    d_in, h_in, w_in = in_shape
    matrix = geometry["matrix"]
    batch = matrix.shape[0]
    to_norm = np.array([2.0 / w_in, 2.0 / h_in, 2.0 / d_in])[None, :, None]  # voxels -> normalized
    theta = np.empty((batch, 3, 4))
    theta[:, :, :3] = to_norm * matrix * np.array([w_out / 2.0, h_out / 2.0, d_out / 2.0])[None, None, :]
    theta[:, :, 3] = to_norm[:, :, 0] * geometry["shift"]
    theta_t = torch.from_numpy(theta).to(device=device, dtype=dtype)
    grid = F.affine_grid(theta_t, [batch, 1, d_out, h_out, w_out], align_corners=False)
    field = geometry["field"]
    if field is not None:
        coarse = np.einsum("bij,bjzyx->bizyx", to_norm * geometry["field_matrix"], field)
        dense = torch.from_numpy(coarse).to(device=device, dtype=dtype)
        n_z, n_y, n_x = field.shape[-3:]
        dense = torch.einsum("bizyx,Xx->bizyX", dense, bicubic_matrix(w_out, n_x, device, dtype))
        dense = torch.einsum("bizyX,Yy->bizYX", dense, bicubic_matrix(h_out, n_y, device, dtype))
        dense = torch.einsum("bizYX,Zz->bZYXi", dense, bicubic_matrix(d_out, n_z, device, dtype))
        grid = grid + dense
    return grid


def _resample_labels(target, weights, grid, dtype):
    """Target and weights moved together by nearest-neighbour sampling of ``grid``."""
    parts = [t.to(dtype) for t in (target, weights) if t is not None]  # class ids: exact below 2**24
    moved = F.grid_sample(torch.stack(parts, 1), grid.to(dtype), mode="nearest", padding_mode="reflection",
                          align_corners=False)
    out_target = None if target is None else moved[:, 0].round().to(target.dtype)
    out_weights = None if weights is None else moved[:, len(parts) - 1].to(weights.dtype)
    return out_target, out_weights


def augment_volume_batch(image, target=None, weights=None, config: AugmentConfig | None = None,
                         generator: torch.Generator | None = None, *, spacing=None, out_shape=None,
                         target_shape=None):
    """Augment a batch of volumes: one random geometric transform per sample, shared by image,
    target and weights.

    Parameters
    ----------
    image : (B, C, Z, Y, X) float tensor
    target : (B, Z, Y, X) integer tensor, optional
    weights : (B, Z, Y, X) float tensor, optional (0: an unannotated voxel)
    config : AugmentConfig
        What to apply (None: the defaults); ``enabled=False`` gives centre crops.
    generator : torch.Generator
        Source of every random number (a CPU generator works for GPU tensors too).
    spacing : (dz, dy, dx), optional
        Voxel size in any unit (None: cubic voxels).
    out_shape : (Z, Y, X), optional
        Size of the returned image, centred in the input (default: the input size).
    target_shape : (Z, Y, X), optional
        Size of the returned target / weights, centred in ``out_shape`` (default ``out_shape``).

    Returns
    -------
    image (B, C, *out_shape), target (B, *target_shape) or None, weights (B, *target_shape) or None
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 5:
        raise ValueError(f"image must be a (B, C, Z, Y, X) tensor, got shape {tuple(getattr(image, 'shape', ()))}")
    config = AugmentConfig() if config is None else config
    rel = _relative_spacing(spacing)
    batch, in_shape = image.shape[0], tuple(image.shape[2:])
    for name, t in (("target", target), ("weights", weights)):
        if t is not None and tuple(t.shape) != (batch, *in_shape):
            raise ValueError(f"{name} must be (B, Z, Y, X) = {(batch, *in_shape)}, got {tuple(t.shape)}")
    out_shape = _shape3("out_shape", out_shape, in_shape)
    target_shape = _shape3("target_shape", target_shape, out_shape)
    if any(t > o for t, o in zip(target_shape, out_shape)):
        raise ValueError(f"target_shape {target_shape} must fit inside out_shape {out_shape}")
    if not image.is_floating_point():
        image = image.float()
    geometry = _random_geometry(batch, config, generator, rel) if config.enabled else {"changed": False}
    if geometry["changed"]:
        grid = _sampling_grid(geometry, out_shape, in_shape, image.device, image.dtype)
        out_image = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        out_target = out_weights = None
        if target is not None or weights is not None:
            z0, y0, x0 = ((o - t) // 2 for o, t in zip(out_shape, target_shape))
            small = grid[:, z0 : z0 + target_shape[0], y0 : y0 + target_shape[1], x0 : x0 + target_shape[2]]
            dtype = torch.promote_types(image.dtype, torch.float32)
            out_target, out_weights = _resample_labels(target, weights, small, dtype)
    else:
        out_image, out_target, out_weights = unmoved(image, target, weights, out_shape, target_shape)
    if config.enabled:
        out_image = gray_values(out_image, config, generator)
    return out_image, out_target, out_weights


@functools.lru_cache(maxsize=64)
def _volume_margin(config: AugmentConfig, shape: tuple, spacing: tuple | None) -> tuple[int, int, int]:
    rx, ry, rz = _relative_spacing(spacing)
    half_z, half_y, half_x = shape[0] / 2.0 * rz, shape[1] / 2.0 * ry, shape[2] / 2.0 * rx  # physical
    extra_y, extra_x, scale = xy_reach(config, half_y, half_x)
    extra = np.maximum([half_z * (scale - 1.0), extra_y, extra_x], 0.0) + deformation_reach(config, scale)
    return tuple(int(math.ceil(e / r)) + 1 for e, r in zip(extra, (rz, ry, rx)))


def volume_margin(config: AugmentConfig | None, shape, spacing=None) -> tuple[int, int, int]:
    """Extra context in voxels (z, y, x), on each side of an input tile of ``shape`` (Z, Y, X),
    that the geometric augmentation of ``config`` may read for voxels of ``spacing`` (dz, dy, dx)
    (so a sampler can pass real image content, not mirrors); cached."""
    if config is None or not config.enabled:
        return (0, 0, 0)
    shape = _shape3("shape", shape, None)
    spacing = None if spacing is None else tuple(float(s) for s in spacing)
    try:
        return _volume_margin(config, shape, spacing)
    except TypeError:  # a config holding lists is not hashable: compute without the cache
        return _volume_margin.__wrapped__(config, shape, spacing)
