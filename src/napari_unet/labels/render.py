"""Pictures without an image library: PNG encoding (zlib only), gray images as RGB, label overlays.

Used by the demo's side-by-side picture (cli) and the cover of a bioimage.io package.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["png_bytes", "write_png", "gray_rgb", "label_colors", "overlay", "side_by_side"]


def png_bytes(rgb: np.ndarray) -> bytes:
    """The PNG encoding of an ``(H, W, 3)`` uint8 image, with the standard library alone."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_png expects an (H, W, 3) image, got {rgb.shape}")
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    return png


def write_png(path, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 image as PNG with the standard library alone."""
    from ..files.safe_write import atomic_write_bytes

    return atomic_write_bytes(path, png_bytes(rgb))


def gray_rgb(image: np.ndarray) -> np.ndarray:
    from ..model.normalization import percentile_normalize

    x = np.clip(percentile_normalize(np.asarray(image, dtype=np.float32), 1, 99.8), 0, 1)
    return np.repeat((x * 255).astype(np.uint8)[..., None], 3, axis=2)


def label_colors(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    colors = rng.integers(60, 256, size=(n + 1, 3)).astype(np.uint8)
    colors[0] = 0
    return colors


def overlay(base: np.ndarray, labels: np.ndarray, alpha: float = 0.55, background=None) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64)
    colors = label_colors(int(labels.max()) if labels.size else 0)
    if background is not None and labels.max() >= 1:
        colors[1] = background
    color = colors[labels].astype(np.float32)
    out = base.astype(np.float32)
    m = labels > 0
    out[m] = (1 - alpha) * out[m] + alpha * color[m]
    return out.astype(np.uint8)


def side_by_side(image, annotations, labels, gap: int = 8) -> np.ndarray:
    """RGB picture: image | image + annotations | image + predicted labels."""
    gray = gray_rgb(image)
    panels = [gray, overlay(gray, annotations, background=(40, 90, 255)), overlay(gray, labels)]
    h = gray.shape[0]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    return np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1)
