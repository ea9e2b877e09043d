"""Readouts against independent references (scikit-learn's ridge, an independent logistic fit), and
features computed with shared batch statistics."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core import evaluation


def test_ridge_readout_matches_sklearn_ridge():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6)) * 1.5
    labels = rng.integers(4, size=60)
    features = centres[labels] + rng.normal(size=(60, 6))
    test = centres[rng.integers(4, size=200)] + rng.normal(size=(200, 6))
    ours = evaluation.ridge_readout(features, labels, test, 4, ridge_lambda=3.0)
    reference = Ridge(alpha=3.0, fit_intercept=True).fit(features, np.eye(4)[labels]).predict(test)
    np.testing.assert_array_equal(ours, reference.argmax(axis=1))
    assert len(set(ours.tolist())) == 4


def test_logistic_readout_matches_an_independent_fit():
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 10)
    features = rng.normal(size=(30, 5)) * [1, 10, 0.1, 1, 3] + labels[:, None] * [1, 0, 0.1, -1, 2]
    test = rng.normal(size=(100, 5)) * [1, 10, 0.1, 1, 3] + rng.integers(3, size=(100, 1)) * [1, 0, 0.1, -1, 2]
    mean, std = features.mean(0), features.std(0)
    z, z_test = (features - mean) / std, (test - mean) / std

    def objective(flat):  # C · Σ cross-entropy + ½‖W‖², bias unpenalised (C = 1)
        w, b = flat[:15].reshape(5, 3), flat[15:]
        logits = z @ w + b
        return np.sum(logsumexp(logits, axis=1) - logits[np.arange(30), labels]) + 0.5 * np.sum(w * w)

    flat = minimize(objective, np.zeros(18), method="BFGS", options={"gtol": 1e-8}).x
    reference = (z_test @ flat[:15].reshape(5, 3) + flat[15:]).argmax(axis=1)
    ours = evaluation.logistic_readout(features, labels, test, 3, c=1.0)
    assert np.mean(ours == reference) >= 0.99
    assert len(set(ours.tolist())) == 3


class _BatchCentred(evaluation.FeatureModel):
    def features(self, x):
        return x - x.mean(axis=0)


class _PerExample(evaluation.FeatureModel):
    def features(self, x):
        return np.tanh(x)


def test_features_are_computed_with_shared_batch_statistics():
    rng = np.random.default_rng(0)
    labeled, test = rng.normal(size=(10, 3)), rng.normal(size=(150, 3))
    # one pass when everything fits
    a, b = evaluation.compute_features(_BatchCentred(), labeled, test, 1000)
    both = np.concatenate([labeled, test])
    np.testing.assert_allclose(np.concatenate([a, b]), both - both.mean(0))
    # chunks of test examples, each next to the labelled ones
    a, b = evaluation.compute_features(_PerExample(), labeled, test, 10 + 64)
    np.testing.assert_allclose(a, np.tanh(labeled))
    np.testing.assert_allclose(b, np.tanh(test))
    a, b = evaluation.compute_features(_BatchCentred(), labeled, test, 10 + 75)
    chunk = np.concatenate([labeled, test[:75]])
    np.testing.assert_allclose(b[:75], (chunk - chunk.mean(0))[10:])
    with pytest.raises(evaluation.EvaluationError, match="feature_batch"):
        evaluation.compute_features(_PerExample(), labeled, test, 20)
