"""Vectorised host-side image operations shared by image plugins (not a plugin itself).

Images are NumPy arrays [N, H, W, C]. Nothing here loops over examples in Python.
"""

from __future__ import annotations

import numpy as np

RESIZE_CHUNK = 4096  # images per matrix product (bounds temporary memory)


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of antialiased linear (triangle-kernel) resampling,
    the kernel `jax.image.resize(..., "linear", antialias=True)` uses; rows sum to 1."""
    scale = size_out / size_in
    kernel_scale = min(scale, 1.0)  # widen the triangle when shrinking (antialiasing)
    centres = (np.arange(size_out) + 0.5) / scale - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(size_in)[None, :] - centres[:, None]) * kernel_scale)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W, C] -> [N, size, size, C] float32; separable matrix products, no compilation."""
    if x.shape[1:3] == (size, size):
        return x.astype(np.float32, copy=False)
    rows, cols = resize_matrix(x.shape[1], size), resize_matrix(x.shape[2], size)
    out = np.empty((len(x), size, size, x.shape[-1]), np.float32)
    for start in range(0, len(x), RESIZE_CHUNK):
        part = np.moveaxis(x[start:start + RESIZE_CHUNK].astype(np.float32, copy=False), -1, 1)
        out[start:start + len(part)] = np.moveaxis((rows @ part) @ cols.T, 1, -1)  # [n, c, o, p]
    return out


def affine_warp(images: np.ndarray, angle: np.ndarray, shift: np.ndarray,
                scale: np.ndarray | float = 1.0) -> np.ndarray:
    """Rotate by `angle` (radians, [N]), scale by `scale` ([N] or scalar) about the centre,
    then translate by `shift` ([N, 2] pixels, (down, right)). Bilinear, zero outside.

    images: [N, H, W, C]. Returns float32 of the same shape.
    """
    n, height, width, channels = images.shape
    cy, cx = (height - 1) / 2, (width - 1) / 2
    rows = (np.arange(height, dtype=np.float32) - cy)[None, :, None]
    cols = (np.arange(width, dtype=np.float32) - cx)[None, None, :]
    cos = (np.cos(angle) / scale).astype(np.float32)[:, None, None]
    sin = (np.sin(angle) / scale).astype(np.float32)[:, None, None]
    dy = rows - np.asarray(shift[:, 0], np.float32)[:, None, None]
    dx = cols - np.asarray(shift[:, 1], np.float32)[:, None, None]
    # inverse map (output pixel -> source coordinate), in a frame padded by one zero pixel,
    # so clipping every coordinate into the padded frame gives zeros outside the image
    src_y = np.clip(cos * dy - sin * dx + np.float32(cy + 1), 0, height + 0.999)
    src_x = np.clip(sin * dy + cos * dx + np.float32(cx + 1), 0, width + 0.999)
    y0, x0 = np.floor(src_y), np.floor(src_x)
    wy, wx = src_y - y0, src_x - x0
    padded = np.zeros((channels, n, height + 2, width + 2), np.float32)  # channel-major: 1-D gathers
    padded[:, :, 1:-1, 1:-1] = np.moveaxis(images, -1, 0)
    stride = width + 2
    index_type = np.int32 if padded[0].size < 2**31 else np.int64
    top = (np.arange(n, dtype=index_type) * ((height + 2) * stride))[:, None, None] \
        + y0.astype(index_type) * stride + x0.astype(index_type)
    out = np.empty(images.shape, np.float32)
    for c in range(channels):
        flat = padded[c].ravel()
        upper = flat[top] * (1 - wx) + flat[top + 1] * wx
        lower = flat[top + stride] * (1 - wx) + flat[top + stride + 1] * wx
        out[..., c] = upper * (1 - wy) + lower * wy
    return out
