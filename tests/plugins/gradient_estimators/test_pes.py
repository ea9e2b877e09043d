"""`pes` on the linear problem: unbiased over the horizon, its state per task, a bit-identical resume mid-horizon."""

from __future__ import annotations

import jax
import numpy as np

from metaplastic.plugins.gradient_estimators.pes import PES, PESPairs
from metaplastic.plugins.gradient_estimators.truncated_backprop import TruncatedBackprop

from helpers.linear_problem import (ARCH, FEATURES, INPUT_DIM, NUM_TASKS, UNROLL, tiny_digits_config, mean_and_standard_error,
                                    problem, run_horizon, truncation)


def test_pes_is_unbiased_over_the_horizon_where_truncated_backprop_is_not(problem):
    exact = problem["exact"]
    pes = PES(UNROLL, std=0.05, num_pairs=64, max_loss_diff=1e6)  # no clipping: its bias is not under test
    samples = [run_horizon(pes, problem, jax.random.PRNGKey(100 + i))[0] for i in range(30)]
    mean, standard_error = mean_and_standard_error(samples)
    tbptt, _ = run_horizon(TruncatedBackprop(UNROLL), problem, jax.random.PRNGKey(0))
    scale = np.linalg.norm(exact)
    # PES: within 4 standard errors of the exact full-horizon gradient, and that error bar is tight
    assert np.all(np.abs(mean - exact) < 4 * standard_error), (mean, exact, standard_error)
    assert standard_error.max() < 0.05 * scale
    # truncated backprop: deterministic, and off by far more than PES's error bar
    # (here: relative error ≈ 0.6, largest entry off by ≈ 2.5 against a standard error ≈ 0.14)
    tbptt_error = np.abs(tbptt - exact)
    assert np.linalg.norm(tbptt - exact) > 0.3 * scale, (tbptt, exact)
    assert tbptt_error.max() > 10 * standard_error.max(), (tbptt_error, standard_error)


def test_pes_state_keeps_tasks_on_the_leading_axis(problem):
    pes = PES(UNROLL, num_pairs=3)
    state = pes.init_state(problem["theta"], problem["init_key"], ARCH, NUM_TASKS, 8)
    _, state, _ = pes.estimate(problem["theta"], state, truncation(problem["data"], 0),
                               jax.random.PRNGKey(0))
    assert isinstance(state.extra, PESPairs)
    for leaf in jax.tree.leaves((state.inner, state.extra)):
        assert leaf.shape[0] == NUM_TASKS
    for leaf in jax.tree.leaves(state.extra):
        assert leaf.shape[1] == 3
    assert state.extra.accumulator["drive"].shape == (NUM_TASKS, 3, INPUT_DIM, FEATURES)


def test_pes_resume_mid_horizon_is_bit_identical(tmp_path):
    from metaplastic.core.trainer import MetaTrainer

    overrides = ("--config.gradient_estimator=pes", "--config.gradient_estimator_config.num_pairs=2",
                 "--config.checkpoint_every=100")
    straight = MetaTrainer(tiny_digits_config(*overrides, "--config.num_steps=6"), tmp_path / "straight")
    straight.run(progress=False)

    first = MetaTrainer(tiny_digits_config(*overrides, "--config.num_steps=3"), tmp_path / "resumed")
    first.run(progress=False)  # saves at exit: step 3, one truncation into the second 2-truncation horizon
    assert int(first.estimator_state.step_in_horizon) == 2 < int(first.estimator_state.horizon)
    accumulator = first.estimator_state.extra.accumulator
    assert any(np.any(np.asarray(a) != 0) for a in jax.tree.leaves(accumulator))

    second = MetaTrainer(tiny_digits_config(*overrides, "--config.num_steps=6"), tmp_path / "resumed")
    assert second.step == 3
    jax.tree.map(np.testing.assert_array_equal, second.estimator_state, first.estimator_state)
    second.run(progress=False)
    jax.tree.map(np.testing.assert_array_equal, second.theta, straight.theta)
    jax.tree.map(np.testing.assert_array_equal, second.estimator_state, straight.estimator_state)
