"""The `imdb_bow` task family's modes, on a small fake review corpus."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core.interfaces import Architecture
from metaplastic.plugins.task_families.imdb_bow import ImdbBow

from helpers.task_families import isolated, key, write_corpus


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("mode", ["counts", "binary", "log_counts"])
def test_imdb_bow_modes(isolated, mode):
    write_corpus(isolated / "npz")
    family = ImdbBow(vocab_size=12, mode=mode, examples_per_class=4)
    assert family.input_dim == 12 and family.target_dim == 2 and "br" not in family.vocabulary
    task = family.sample_task(key(0), Architecture(12, (8,)))
    data = family.truncation_data(task, key(1), 3, 5)
    assert data.unlabelled.shape == (3, 5, 12) and data.meta_b.x.shape == (3, 8, 12)
    assert np.all(data.meta_a.y.sum(1) == 4)
    values = np.unique(data.unlabelled)
    if mode == "binary":
        assert set(values) <= {0.0, 1.0}
    elif mode == "counts":
        assert values.max() >= 2 and np.all(values == np.round(values))
    else:
        assert np.any((values > 0) & (values != np.round(values)))
