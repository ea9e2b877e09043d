"""Few-shot draws: balanced, distinct, uniform."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core import evaluation


def test_few_shot_sampling_is_balanced_distinct_and_uniform():
    labels = np.array([0] * 7 + [1] * 12 + [2] * 5)
    rng = np.random.default_rng(0)
    counts = np.zeros(len(labels))
    draws = 3000
    for _ in range(draws):
        index = evaluation.sample_few_shot(labels, 3, 4, rng)
        assert len(set(index.tolist())) == 12
        np.testing.assert_array_equal(labels[index], np.repeat(np.arange(3), 4))
        counts[index] += 1
    expected = 4 / np.bincount(labels)[labels]  # every example of class c equally likely: 4 / n_c
    np.testing.assert_allclose(counts / draws, expected, atol=0.04)
    again = [evaluation.sample_few_shot(labels, 3, 4, np.random.default_rng(5)) for _ in range(2)]
    np.testing.assert_array_equal(*again)
    with pytest.raises(evaluation.EvaluationError, match="class 2 has 5 .*shots=6"):
        evaluation.sample_few_shot(labels, 3, 6, rng)
