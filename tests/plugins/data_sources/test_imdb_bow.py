"""The `imdb_bow` source: its bag-of-words datasets as feature data for evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core import data as core_data, text as imdb_bow
from metaplastic.core.interfaces import DatasetUnavailable

from helpers.task_families import isolated, write_corpus


@pytest.mark.usefixtures("isolated")
def test_imdb_bow_is_also_a_feature_data_source(isolated):
    with pytest.raises(DatasetUnavailable, match="imdb_bow: needs the text dataset: dataset 'imdb_reviews'"):
        core_data.load_dataset("imdb_bow", "train")
    core_data.load_dataset.cache_clear()
    write_corpus(isolated / "npz")
    train = core_data.load_dataset("imdb_bow_binary", "train")
    test = core_data.load_dataset("imdb_bow", "test")
    vocab = imdb_bow.vocabulary("imdb_reviews", "train", 1000, "")
    assert train.x.shape == (60, len(vocab)) and test.x.shape == (20, len(vocab))
    assert train.num_classes == 2 and set(np.unique(train.x)) <= {0.0, 1.0} and test.x.max() >= 2
    assert train.x.dtype == np.float32
