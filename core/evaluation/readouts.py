"""Readouts fit on the few labelled examples' features, and features with shared batch statistics.

Readouts see training features, training labels and test features, never test labels.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.core.interfaces import EvaluationError, FeatureModel
from metaplastic.core.ops.ridge import ridge_fit, ridge_predict


def ridge_readout(train_features, train_labels, test_features, num_classes: int,
                  ridge_lambda: float) -> np.ndarray:
    """Argmax of the meta-objective's ridge solution (unpenalised bias) fit to one-hot labels."""
    # zero feature columns get zero weight and padded test rows are dropped: padding both to
    # bucket sizes leaves the answer unchanged and bounds the number of compiled shapes
    train_features, test_features = np.asarray(train_features), np.asarray(test_features)
    width = -(-train_features.shape[1] // 32) * 32
    rows = 1 << max(0, len(test_features) - 1).bit_length()
    train = np.zeros((len(train_features), width), np.float32)
    train[:, : train_features.shape[1]] = train_features
    test = np.zeros((rows, width), np.float32)
    test[: len(test_features), : test_features.shape[1]] = test_features
    targets = np.eye(num_classes, dtype=np.float32)[np.asarray(train_labels)]
    return np.asarray(_ridge_argmax(train, targets, test, ridge_lambda))[: len(test_features)]


@jax.jit
def _ridge_argmax(train, targets, test, ridge_lambda):
    return jnp.argmax(ridge_predict(ridge_fit(train, targets, ridge_lambda), test), axis=1)


def logistic_readout(train_features, train_labels, test_features, num_classes: int,
                     c: float) -> np.ndarray:
    """scikit-learn logistic regression (C=c) on features standardised with training statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    del num_classes
    scaler = StandardScaler().fit(train_features)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(scaler.transform(train_features), train_labels)
    return model.predict(scaler.transform(test_features))


READOUTS: dict[str, Callable[..., np.ndarray]] = {"ridge": ridge_readout, "logistic": logistic_readout}


def readout_args(config, readout: str) -> dict:
    """The study's settings for one readout, as keyword arguments of its function in READOUTS."""
    return {"ridge": {"ridge_lambda": config.ridge_lambda}, "logistic": {"c": config.logistic_c}}[readout]


def compute_features(model: FeatureModel, labeled_x: np.ndarray, test_x: np.ndarray,
                     feature_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of labelled and test examples computed with shared batch statistics."""
    n = len(labeled_x)
    if n + len(test_x) <= feature_batch:
        both = model.features(np.concatenate([labeled_x, test_x]))
        return both[:n], both[n:]
    room = feature_batch - n
    if room < 64:
        raise EvaluationError(f"feature_batch={feature_batch} leaves {room} test examples per pass "
                              f"beside {n} labelled ones; raise config.feature_batch")
    chunks = np.array_split(np.arange(len(test_x)), math.ceil(len(test_x) / room))
    size = max(len(c) for c in chunks)
    labeled_parts, test_parts = [], []
    for chunk in chunks:  # pad the last chunk by repeating examples so every pass has one shape
        index = np.resize(chunk, size)
        out = model.features(np.concatenate([labeled_x, test_x[index]]))
        labeled_parts.append(out[:n])
        test_parts.append(out[n:n + len(chunk)])
    return np.mean(labeled_parts, axis=0), np.concatenate(test_parts)


def predict(model: FeatureModel, labeled_x, labeled_y, test_x, num_classes: int,
            readouts: dict[str, dict], feature_batch: int) -> tuple[dict[str, np.ndarray], bool]:
    """Predictions of each readout for test_x. Sees training labels only."""
    train_f, test_f = compute_features(model, labeled_x, test_x, feature_batch)
    finite = bool(np.all(np.isfinite(train_f)) and np.all(np.isfinite(test_f)))
    out = {}
    for name, kwargs in readouts.items():
        if finite:
            out[name] = np.asarray(READOUTS[name](train_f, labeled_y, test_f, num_classes, **kwargs))
        else:  # a diverged representation scores as a constant guess
            out[name] = np.zeros(len(test_x), np.int64)
    return out, finite
