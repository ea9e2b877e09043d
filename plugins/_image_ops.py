"""Vectorised host-side image operations shared by image plugins (not a plugin itself).

Images are NumPy arrays [N, H, W, C]. Nothing here loops over examples in Python.
"""

from __future__ import annotations

import numpy as np

RESIZE_CHUNK = 8192  # images per jax.image.resize call (bounds memory and compiled shapes)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W, C] -> [N, size, size, C] float32, antialiased linear resampling."""
    if x.shape[1:3] == (size, size):
        return x.astype(np.float32, copy=False)
    import jax

    out = np.empty((len(x), size, size, x.shape[-1]), np.float32)
    for start in range(0, len(x), RESIZE_CHUNK):
        part = x[start:start + RESIZE_CHUNK].astype(np.float32)
        out[start:start + len(part)] = np.asarray(jax.image.resize(
            part, (len(part), size, size, part.shape[-1]), "linear", antialias=True))
    return out


def affine_warp(images: np.ndarray, angle: np.ndarray, shift: np.ndarray,
                scale: np.ndarray | float = 1.0) -> np.ndarray:
    """Rotate by `angle` (radians, [N]), scale by `scale` ([N] or scalar) about the centre,
    then translate by `shift` ([N, 2] pixels, (down, right)). Bilinear, zero outside.

    images: [N, H, W, C] float32. Returns the same shape.
    """
    n, height, width, channels = images.shape
    cy, cx = (height - 1) / 2, (width - 1) / 2
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32) - cy,
                             np.arange(width, dtype=np.float32) - cx, indexing="ij")
    cos = (np.cos(angle) / scale).astype(np.float32)[:, None, None]
    sin = (np.sin(angle) / scale).astype(np.float32)[:, None, None]
    dy = (rows[None] - shift[:, 0, None, None]).astype(np.float32)
    dx = (cols[None] - shift[:, 1, None, None]).astype(np.float32)
    # inverse map: output pixel -> source coordinate
    src_y = cos * dy - sin * dx + cy
    src_x = sin * dy + cos * dx + cx
    y0 = np.floor(src_y).astype(np.int32)
    x0 = np.floor(src_x).astype(np.int32)
    wy = (src_y - y0)[..., None]
    wx = (src_x - x0)[..., None]
    flat = images.reshape(n, height * width, channels)
    base = (np.arange(n, dtype=np.int64) * height * width)[:, None, None]
    flat = flat.reshape(n * height * width, channels)
    out = np.zeros(images.shape, np.float32)
    for oy, ox, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                           (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        yy, xx = y0 + oy, x0 + ox
        valid = ((yy >= 0) & (yy < height) & (xx >= 0) & (xx < width))[..., None]
        index = base + np.clip(yy, 0, height - 1) * width + np.clip(xx, 0, width - 1)
        out += np.where(valid, flat[index] * weight, 0.0)
    return out
