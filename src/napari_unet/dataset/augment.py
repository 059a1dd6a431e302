"""Data augmentation in torch, batch-wise, on the CPU or the GPU.

All geometric operations of one sample -- elastic deformation (random displacements on a coarse
grid, std ``elastic_sigma`` px, bicubic upsampling of the field as in Ronneberger et al. 2015),
random 90-degree rotations, flips, a small free rotation, an isotropic scale and a shift -- are
composed into ONE sampling grid, and each tensor is resampled ONCE with ``grid_sample``:

- the image bilinearly,
- target and weights together, with nearest-neighbour sampling: a weight must stay attached to
  the class of the same source pixel (bilinear weights would give an unannotated pixel's
  target part of a neighbour's weight at annotation borders, and smear the sharp border term
  onto cell pixels).

Points outside the input are mirrored (``padding_mode="reflection"``); the tile sampler passes a
margin of real context (:func:`geometric_margin`) so that this is rare. Gray-value changes
(gamma, contrast, brightness, Gaussian noise) touch the image only. Every random number comes
from the ``torch.Generator`` passed in, so a seed reproduces the batch.

Output pixel ``(i, j)`` (centred coordinates ``u = j - (W_out - 1) / 2``, ``v = i - (H_out - 1) / 2``)
reads the input at ``centre_in + M (u + e_x(u, v), v + e_y(u, v)) + t`` with ``M = s R(theta) D``
(``D`` one of the 8 rotations/flips), ``e`` the elastic field and ``t`` the shift.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..config import AugmentConfig

__all__ = ["augment_batch", "elastic_deform", "geometric_margin", "gray_values", "bicubic_matrix", "scale_shift_field",
           "xy_rotation"]


@functools.lru_cache(maxsize=32)
def _bicubic_matrix_cpu(n_out: int, n_in: int) -> torch.Tensor:
    """(n_out, n_in) matrix equal to 1D bicubic upsampling (align_corners=True) of n_in values."""
    if n_in == 1:
        return torch.ones(n_out, 1, dtype=torch.float64)
    basis = torch.eye(n_in, dtype=torch.float64).reshape(1, n_in, n_in, 1)
    up = F.interpolate(basis, size=(n_out, 1), mode="bicubic", align_corners=True)
    return up[0, :, :, 0].T.contiguous()


def bicubic_matrix(n_out: int, n_in: int, device, dtype) -> torch.Tensor:
    """(n_out, n_in) matrix of 1D bicubic upsampling (align_corners=True) of n_in values: how a
    coarse grid of displacements becomes a smooth field, axis by axis."""
    return _bicubic_matrix_cpu(int(n_out), int(n_in)).to(device=device, dtype=dtype)


def _random_geometry(batch: int, config: AugmentConfig, generator) -> dict:
    """Per-sample geometric parameters (numpy float64): matrix (B,2,2), shift (B,2), field (B,2,n,n).

    The same random numbers are drawn whatever the switches, so turning one transform off does
    not change the others for a given seed.
    """
    u = torch.rand(batch, 7, generator=generator, dtype=torch.float64).numpy()
    n = max(1, int(config.elastic_grid))
    field = torch.randn(batch, 2, n, n, generator=generator, dtype=torch.float64).numpy()
    matrix = np.broadcast_to(np.eye(2), (batch, 2, 2)).copy()
    changed = False
    if config.flip:
        matrix = matrix * np.where(u[:, None, 0:2] < 0.5, -1.0, 1.0)  # flip x and / or y
        changed = True
    c, s, rotated = xy_rotation(config, u[:, 2], u[:, 3])
    changed = changed or rotated
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    matrix = rot @ matrix
    matrix, shift, field, scaled = scale_shift_field(config, matrix, u[:, 4], u[:, 5:7], field)
    return {"matrix": matrix, "shift": shift, "field": field, "changed": changed or scaled}


def xy_rotation(config: AugmentConfig, u_quarter, u_free):
    """``(cos, sin, changed)`` of the random rotation in the XY plane, per sample, from uniforms:
    a multiple of 90 degrees (``rotate90``) plus a free angle within +-``rotation_degrees``; right
    angles exact (cos / sin of 0, not 6e-17)."""
    angle = np.zeros(len(u_quarter))
    changed = False
    if config.rotate90:
        angle = angle + np.floor(u_quarter * 4).clip(0, 3) * (math.pi / 2)
        changed = True
    if config.rotation_degrees and config.rotation_degrees > 0:
        angle = angle + (2 * u_free - 1) * math.radians(float(config.rotation_degrees))
        changed = True
    c, s = np.cos(angle), np.sin(angle)
    return np.where(np.abs(c) < 1e-12, 0.0, c), np.where(np.abs(s) < 1e-12, 0.0, s), changed


def scale_shift_field(config: AugmentConfig, matrix, u_scale, u_shift, field):
    """The random isotropic scale (log-uniform in ``scale_range``, from uniforms ``u_scale``) applied
    to ``matrix``, the shift (``shift_pixels``, from uniforms ``u_shift`` (B, n)) and the elastic
    field (``field``, standard normal, times ``elastic_sigma``; None when off), as the 2D and the 3D
    augmentations draw them: ``(matrix, shift, field, changed)``."""
    changed = False
    low, high = (float(v) for v in config.scale_range)
    if (low, high) != (1.0, 1.0):
        matrix = matrix * np.exp(math.log(low) + (math.log(high) - math.log(low)) * u_scale)[:, None, None]
        changed = True
    shift = np.zeros(u_shift.shape)
    if config.shift_pixels and config.shift_pixels > 0:
        shift = (2 * u_shift - 1) * float(config.shift_pixels)
        changed = True
    if config.elastic and config.elastic_sigma > 0:
        field = field * float(config.elastic_sigma)
        changed = True
    else:
        field = None
    return matrix, shift, field, changed


def _sampling_grid(geometry: dict, out_shape, in_shape, device, dtype) -> torch.Tensor:
    """(B, H_out, W_out, 2) grid for ``grid_sample(..., align_corners=False)``.

    The affine part is one ``affine_grid``; the elastic field is transformed by the same matrix
    on its coarse grid (interpolation is linear) and upsampled by two small matrix products.
    """
    h_out, w_out = (int(v) for v in out_shape)
    h_in, w_in = (int(v) for v in in_shape)
    matrix, shift = geometry["matrix"], geometry["shift"]
    batch = matrix.shape[0]
    to_norm = np.array([2.0 / w_in, 2.0 / h_in])[None, :, None]  # pixels -> normalized input units
    theta = np.empty((batch, 2, 3))
    theta[:, :, :2] = to_norm * matrix * np.array([w_out / 2.0, h_out / 2.0])[None, None, :]
    theta[:, :, 2] = to_norm[:, :, 0] * shift
    theta_t = torch.from_numpy(theta).to(device=device, dtype=dtype)
    grid = F.affine_grid(theta_t, [batch, 1, h_out, w_out], align_corners=False)
    field = geometry["field"]
    if field is not None:
        n = field.shape[-1]
        coarse = np.einsum("bij,bjyx->biyx", to_norm * matrix, field)  # in normalized source units
        coarse_t = torch.from_numpy(coarse).to(device=device, dtype=dtype)
        ky = bicubic_matrix(h_out, n, device, dtype)
        kx = bicubic_matrix(w_out, n, device, dtype)
        dense = torch.matmul(torch.matmul(ky, coarse_t), kx.T)  # (B, 2, H, W)
        grid = grid + dense.permute(0, 2, 3, 1)
    return grid


def centre_crop(x: torch.Tensor, shape) -> torch.Tensor:
    """The centre of ``x`` of ``shape`` in its last ``len(shape)`` axes (2D or 3D patches)."""
    shape = tuple(int(s) for s in shape)
    size = tuple(x.shape[-len(shape):])
    if any(t > n for t, n in zip(shape, size)):
        raise ValueError(f"cannot crop shape {shape} out of {size}")
    return x[(Ellipsis, *(slice((n - t) // 2, (n - t) // 2 + t) for n, t in zip(size, shape)))]


def unmoved(image, target, weights, out_shape, target_shape):
    """A batch without geometric augmentation: the image cropped to ``out_shape``, the target and
    weights to ``target_shape``, all around the centre (2D or 3D)."""
    out_target = None if target is None else centre_crop(centre_crop(target, out_shape), target_shape)
    out_weights = None if weights is None else centre_crop(centre_crop(weights, out_shape), target_shape)
    return centre_crop(image, out_shape), out_target, out_weights


def gray_values(image: torch.Tensor, config: AugmentConfig, generator) -> torch.Tensor:
    """Random gamma, contrast, brightness and Gaussian noise of ``config``, one draw per sample.

    ``image`` is (B, C, ...) of any number of spatial axes (2D planes or 3D volumes): each
    sample's parameters apply to all its channels and pixels; gamma and contrast use the
    sample's own range and mean. Random numbers come from ``generator``.
    """
    batch = image.shape[0]
    dims = tuple(range(1, image.ndim))
    view = (batch,) + (1,) * (image.ndim - 1)
    u = torch.rand(batch, 4, generator=generator, dtype=torch.float64).numpy()

    def param(column, low, high):
        values = float(low) + (float(high) - float(low)) * u[:, column]
        return torch.from_numpy(values).to(image.device, image.dtype).reshape(view)

    g_low, g_high = (float(v) for v in config.gamma_range)
    if (g_low, g_high) != (1.0, 1.0):
        gamma = torch.exp(param(0, math.log(g_low), math.log(g_high)))
        low = image.amin(dim=dims, keepdim=True)
        span = (image.amax(dim=dims, keepdim=True) - low).clamp_min(1e-6)
        image = ((image - low) / span).clamp_min_(0.0).pow_(gamma).mul_(span).add_(low)
    c_low, c_high = (float(v) for v in config.contrast_range)
    if (c_low, c_high) != (1.0, 1.0):
        mean = image.mean(dim=dims, keepdim=True)
        image = (image - mean).mul_(param(1, c_low, c_high)).add_(mean)
    if config.brightness and config.brightness > 0:
        image = image + param(2, -config.brightness, config.brightness)
    if config.noise_std and config.noise_std > 0:
        std = param(3, 0.0, config.noise_std)
        if generator is None or generator.device == image.device:
            noise = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        else:
            noise = torch.randn(image.shape, generator=generator, dtype=image.dtype).to(image.device)
        image = image + noise.mul_(std)
    return image


def geometric_margin(config: AugmentConfig | None, shape) -> int:
    """Extra context in pixels, on each side of an input tile of ``shape``, that the geometric
    augmentation of ``config`` may read (so a sampler can pass real image content, not mirrors)."""
    if config is None or not config.enabled:
        return 0
    half_y, half_x = (int(s) / 2.0 for s in shape)
    extra_y, extra_x, scale = xy_reach(config, half_y, half_x)
    return int(math.ceil(max(extra_y, extra_x, 0.0) + deformation_reach(config, scale))) + 1


def xy_reach(config: AugmentConfig, half_y: float, half_x: float) -> tuple[float, float, float]:
    """How far beyond a patch of half sizes ``half_y``, ``half_x`` its XY rotation (by 90 degrees
    and up to ``config.rotation_degrees``) and largest scale may read, in Y and in X, and that
    scale: the one rule of the 2D and 3D margins."""
    if config.rotate90:
        half_y = half_x = max(half_y, half_x)
    scale = max(1.0, float(max(config.scale_range)))
    theta = math.radians(min(45.0, abs(float(config.rotation_degrees or 0.0))))
    if theta <= math.atan2(half_x, half_y) and theta <= math.atan2(half_y, half_x):
        ext_y = half_y * math.cos(theta) + half_x * math.sin(theta)
        ext_x = half_x * math.cos(theta) + half_y * math.sin(theta)
    else:
        ext_y = ext_x = math.hypot(half_y, half_x)
    return ext_y * scale - half_y, ext_x * scale - half_x, scale


def deformation_reach(config: AugmentConfig, scale: float) -> float:
    """How far the elastic deformation (three sigmas, scaled) and the shift may move a pixel."""
    return (3.0 * float(config.elastic_sigma) * scale if config.elastic else 0.0) + float(config.shift_pixels or 0.0)


def augment_batch(
    image: torch.Tensor,
    target: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    config: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
    *,
    out_shape=None,
    target_shape=None,
):
    """Augment a batch: one random geometric transform per sample, shared by image, target, weights.

    Parameters
    ----------
    image : (B, C, H, W) float tensor
    target : (B, H, W) integer tensor, optional
    weights : (B, H, W) float tensor, optional
    config : AugmentConfig
        What to apply (None: the defaults).
    generator : torch.Generator
        Source of every random number (a CPU generator works for GPU tensors too; the noise is
        drawn on the generator's device and moved).
    out_shape : (int, int), optional
        Size of the returned image, centred in the input (default: the input size). A larger
        input gives the transform real context to read from.
    target_shape : (int, int), optional
        Size of the returned target / weights, centred in ``out_shape`` (default ``out_shape``;
        the network's output size for a valid-convolution U-Net).

    Returns
    -------
    image (B, C, *out_shape), target (B, *target_shape) or None, weights (B, *target_shape) or None
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got shape {tuple(image.shape)}")
    config = AugmentConfig() if config is None else config
    batch, _, h_in, w_in = image.shape
    for name, t in (("target", target), ("weights", weights)):
        if t is not None and tuple(t.shape) != (batch, h_in, w_in):
            raise ValueError(f"{name} must be (B, H, W) = {(batch, h_in, w_in)}, got {tuple(t.shape)}")
    out_shape = (h_in, w_in) if out_shape is None else tuple(int(s) for s in out_shape)
    target_shape = out_shape if target_shape is None else tuple(int(s) for s in target_shape)
    if target_shape[0] > out_shape[0] or target_shape[1] > out_shape[1]:
        raise ValueError(f"target_shape {target_shape} must fit inside out_shape {out_shape}")
    if not image.is_floating_point():
        image = image.float()
    geometry = _random_geometry(batch, config, generator) if config.enabled else {"changed": False}
    if geometry["changed"]:
        grid = _sampling_grid(geometry, out_shape, (h_in, w_in), image.device, image.dtype)
        out_image = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        out_target = out_weights = None
        if target is not None or weights is not None:
            parts = []
            if target is not None:
                parts.append(target.to(image.dtype))  # class ids: exact below 2**24
            if weights is not None:
                parts.append(weights.to(parts[0].dtype if parts else image.dtype))
            stacked = torch.stack(parts, 1)
            r0, c0 = (out_shape[0] - target_shape[0]) // 2, (out_shape[1] - target_shape[1]) // 2
            small_grid = grid[:, r0 : r0 + target_shape[0], c0 : c0 + target_shape[1]]
            moved = F.grid_sample(stacked, small_grid.to(stacked.dtype), mode="nearest", padding_mode="reflection", align_corners=False)
            k = 0
            if target is not None:
                out_target = moved[:, 0].round().to(target.dtype)
                k = 1
            if weights is not None:
                out_weights = moved[:, k].to(weights.dtype)
    else:
        out_image, out_target, out_weights = unmoved(image, target, weights, out_shape, target_shape)
    if config.enabled:
        out_image = gray_values(out_image, config, generator)
    return out_image, out_target, out_weights


def elastic_deform(image, *arrays, sigma: float = 10.0, grid: int = 3, seed: int | None = None):
    """Elastically deform one sample (numpy), as in Ronneberger et al. (2015).

    Random displacement vectors on a coarse ``grid`` x ``grid`` grid (Gaussian, std ``sigma``
    pixels), upsampled bicubically to a smooth per-pixel field; borders are mirrored.

    Parameters
    ----------
    image : (..., Y, X) array
        Interpolated bilinearly; returned as float32 (float64 if given float64).
    *arrays : (..., Y, X) arrays
        Same Y, X; deformed with the same field, nearest-neighbour (labels, masks, weights),
        returned with their dtype.
    sigma : float
        Standard deviation of the control-point displacements in pixels.
    grid : int
        Control points per axis.
    seed : int, optional
        Random seed (None: a fresh random field).

    Returns
    -------
    The deformed image, or a tuple ``(image, *arrays)`` when arrays are given.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    >>> labels = (img > 0.5).astype(np.uint8)
    >>> out, out_labels = elastic_deform(img, labels, sigma=5, seed=1)
    >>> out.shape, out_labels.dtype.name
    ((64, 64), 'uint8')
    """
    img = np.asarray(image)
    if img.ndim < 2:
        raise ValueError(f"image must be at least 2D (..., Y, X), got shape {img.shape}")
    shape = img.shape[-2:]
    for i, a in enumerate(arrays):
        if np.asarray(a).shape[-2:] != shape:
            raise ValueError(f"array {i} has spatial shape {np.asarray(a).shape[-2:]}, the image {shape}")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**63 - 1))
    generator = torch.Generator().manual_seed(int(seed))
    geometry = {
        "matrix": np.eye(2)[None],
        "shift": np.zeros((1, 2)),
        "field": torch.randn(1, 2, int(grid), int(grid), generator=generator, dtype=torch.float64).numpy() * float(sigma),
    }
    dtype = torch.float64 if img.dtype == np.float64 else torch.float32
    sample_grid = _sampling_grid(geometry, shape, shape, "cpu", torch.float64)
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float64 if dtype == torch.float64 else np.float32))
    x = x.reshape(1, -1, *shape)
    out = F.grid_sample(x, sample_grid.to(dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
    result = [out.reshape(img.shape).numpy()]
    for a in arrays:
        a = np.asarray(a)
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).reshape(1, -1, *shape)
        moved = F.grid_sample(t, sample_grid, mode="nearest", padding_mode="reflection", align_corners=False)
        moved = moved.reshape(a.shape).numpy()
        if a.dtype != bool and not np.issubdtype(a.dtype, np.floating):
            moved = np.rint(moved)
        result.append(moved.astype(a.dtype))
    return result[0] if not arrays else tuple(result)
