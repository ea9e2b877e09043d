"""What the estimators share (`core.estimation`), on the linear problem of tests/helpers/linear_problem.py:
loss differences clipped, non-finite pairs dropped, one config field that switches the estimator."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.plugins.gradient_estimators.pes import PES
from metaplastic.plugins.gradient_estimators.truncated_backprop import TruncatedBackprop
from metaplastic.plugins.gradient_estimators.truncated_es import TruncatedES

from helpers.linear_problem import (ARCH, HalfSquaredError, NUM_TASKS, SecondMomentDrive, UNROLL, tiny_digits_config, problem,
                                    truncation)


def test_loss_differences_are_clipped(problem):
    theta, data, key = problem["theta"], problem["data"], jax.random.PRNGKey(3)
    grads = {}
    for clip in (1e-6, 2e-6, 1e3):
        es = TruncatedES(UNROLL, std=0.05, num_pairs=4, max_loss_diff=clip)
        state = es.init_state(theta, problem["init_key"], ARCH, NUM_TASKS, 8)
        grad, _, metrics = es.estimate(theta, state, truncation(data, 0), key)
        grads[clip] = np.asarray(grad["drive"])
        assert float(metrics["es_clipped_fraction"]) == (1.0 if clip < 1 else 0.0)
    # every difference saturates: the estimate is linear in the clip value and tiny
    np.testing.assert_allclose(grads[2e-6], 2 * grads[1e-6], rtol=1e-5)
    assert np.linalg.norm(grads[1e-6]) < 1e-3 * np.linalg.norm(grads[1e3])


@pytest.mark.parametrize("estimator_class", [TruncatedES, PES])
def test_non_finite_pairs_are_dropped(problem, estimator_class):
    theta, data = problem["theta"], problem["data"]
    unroll = TruncatedUnroll(SecondMomentDrive(nan_above=float(jnp.max(theta["drive"])) + 0.02),
                             HalfSquaredError())
    estimator = estimator_class(unroll, std=0.05, num_pairs=8)
    state = estimator.init_state(theta, problem["init_key"], ARCH, NUM_TASKS, 8)
    grad, state, metrics = estimator.estimate(theta, state, truncation(data, 0),
                                              jax.random.PRNGKey(4))
    dropped = int(metrics["es_nonfinite_pairs"])
    assert 0 < dropped < NUM_TASKS * 8  # some pairs cross the threshold, θ itself does not
    assert np.all(np.isfinite(grad["drive"])) and np.isfinite(float(metrics["meta_loss"]))
    assert np.all(np.isfinite(state.inner.params["w"]))
    if estimator_class is PES:
        pairs = state.extra
        restarted = np.all(np.asarray(pairs.accumulator["drive"]) == 0, axis=(2, 3))  # [T, pairs]
        assert restarted.sum() == dropped
        mean_w = np.asarray(state.inner.params["w"])[:, None]
        for side in (pairs.positive, pairs.negative):
            w = np.asarray(side.params["w"])
            assert np.all(np.isfinite(w))
            np.testing.assert_array_equal(np.broadcast_to(mean_w, w.shape)[restarted], w[restarted])


@pytest.mark.parametrize("name,expected", [("pes", PES), ("truncated_es", TruncatedES),
                                           ("truncated_backprop", TruncatedBackprop)])
def test_one_config_field_switches_the_estimator(name, expected):
    config = tiny_digits_config(f"--config.gradient_estimator={name}")
    assert type(config_lib.build_components(config).estimator) is expected
    if name != "truncated_backprop":
        config = tiny_digits_config(f"--config.gradient_estimator={name}",
                         "--config.gradient_estimator_config.num_pairs=3",
                         "--config.gradient_estimator_config.std=0.1")
        estimator = config_lib.build_components(config).estimator
        assert (estimator.num_pairs, estimator.std, estimator.max_loss_diff) == (3, 0.1, 1.0)
