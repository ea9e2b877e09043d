"""The `npz` source: the array layouts and text files it reads."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core import data as core_data
from metaplastic.core.interfaces import DatasetUnavailable

from helpers.data_sources import isolated  # noqa: F401  (a fixture, used by name)

pytestmark = pytest.mark.usefixtures("isolated")


def test_npz_layouts_and_text(isolated):
    rng = np.random.default_rng(0)
    root = isolated / "npz"
    np.savez(root / "keras_like.npz", x_train=rng.integers(0, 256, (10, 4, 4), dtype=np.uint8),
             y_train=np.arange(10) % 2, x_test=np.zeros((4, 4, 4), np.uint8), y_test=np.zeros(4, int))
    np.savez(root / "feats_train.npz", x=rng.random((6, 3)).astype(np.float32), y=np.arange(6) % 3,
             num_classes=5)
    np.savez(root / "texts_train.npz", x=np.asarray(["good film", "bad film"]), y=np.asarray([1, 0]))

    images = core_data.load_dataset("keras_like", "train")
    assert images.x.shape == (10, 4, 4, 1) and images.x.max() <= 1.0 and images.num_classes == 2
    feats = core_data.load_dataset("feats", "train")
    assert feats.x.shape == (6, 3) and feats.num_classes == 5
    texts = core_data.load_dataset("texts", "train")
    assert texts.x.dtype == object and texts.x[0] == "good film"
    by_path = core_data.load_dataset(str(root / "keras_like.npz"), "test", source="npz")
    assert by_path.x.shape == (4, 4, 4, 1)
    with pytest.raises(DatasetUnavailable, match=r"has no arrays \['x_valid', 'y_valid'\]"):
        core_data.load_dataset("keras_like", "valid", source="npz")
