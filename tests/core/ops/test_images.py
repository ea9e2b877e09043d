"""Image operations: affine warps, and NumPy resizing against JAX's antialiased linear resize."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from metaplastic.core.ops.images import affine_warp

from helpers.task_families import isolated


@pytest.mark.usefixtures("isolated")
def test_affine_warp_identity_shift_and_rotation():
    image = np.zeros((1, 7, 7, 1), np.float32)
    image[0, 3, 4] = 1.0
    same = affine_warp(image, np.zeros(1), np.zeros((1, 2)))
    np.testing.assert_allclose(same, image, atol=1e-6)
    moved = affine_warp(image, np.zeros(1), np.asarray([[1.0, -2.0]]))
    assert moved[0, 4, 2, 0] == pytest.approx(1.0)
    turned = affine_warp(image, np.asarray([np.pi / 2]), np.zeros((1, 2)))
    assert turned.sum() == pytest.approx(1.0, abs=1e-5) and turned[0, 3, 4, 0] < 0.5


@pytest.mark.usefixtures("isolated")
def test_numpy_resize_matches_jax_antialiased_linear():
    from metaplastic.core.ops.images import resize_images

    x = np.random.default_rng(0).random((3, 28, 28, 2), dtype=np.float32)
    for size in (16, 14, 40):
        expected = jax.image.resize(x, (3, size, size, 2), "linear", antialias=True)
        np.testing.assert_allclose(resize_images(x, size), expected, atol=1e-5)
