"""The class-balanced sampler the task families share: distinct draws in range, replacement as fallback."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core import classification as _classification

from helpers.task_families import isolated


@pytest.mark.usefixtures("isolated")
def test_distinct_draws_are_distinct_in_range_and_fall_back_to_replacement():
    rng = np.random.default_rng(0)
    sizes = np.asarray([20, 7, 3])
    draws = distinct = _classification.distinct_draws(rng, sizes, (50, 3), 6)
    assert draws.shape == (50, 3, 6)
    for c, size in enumerate(sizes):
        assert draws[:, c].min() >= 0 and draws[:, c].max() < size
    distinct = [len(set(row)) for row in draws[:, 0]] + [len(set(row)) for row in draws[:, 1]]
    assert min(distinct) == 6  # pools with >= 6 examples never repeat within a step
    assert len(np.unique(draws[:, 0])) == 20  # and every example gets used
