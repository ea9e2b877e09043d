"""`truncated_backprop` against the closed form of the linear problem (tests/helpers/linear_problem.py)."""

from __future__ import annotations

import jax
import numpy as np

from metaplastic.plugins.gradient_estimators.truncated_backprop import TruncatedBackprop

from helpers.linear_problem import NUM_TRUNCATIONS, TRUNCATION, UNROLL, problem, run_horizon


def test_closed_form_matches_truncated_backprop(problem):
    """The NumPy reference reproduces autodiff's truncated gradient, so it can be trusted for the full one."""
    tbptt, state = run_horizon(TruncatedBackprop(UNROLL), problem, jax.random.PRNGKey(0))
    np.testing.assert_allclose(tbptt, problem["truncated"], rtol=1e-4, atol=1e-6)
    assert int(state.step_in_horizon) == TRUNCATION * NUM_TRUNCATIONS
