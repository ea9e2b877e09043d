"""`nres` (noise-reuse ES) on the linear problem of tests/helpers/linear_problem.py, whose closed-form
gradients are the yardstick.

NRES draws each pair's ε once per horizon (in `init_state`), so `run_horizon`, which always starts
from `problem["init_key"]` (the start states the closed form assumes), would reuse one ε for every
sample; `NoiseFrom` keeps those start states and takes ε from a per-sample key instead.
"""

from __future__ import annotations

import dataclasses

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.linear_problem import (ARCH, HalfSquaredError, NUM_TASKS, NUM_TRUNCATIONS, SecondMomentDrive, TRUNCATION,
                             UNROLL, mean_and_standard_error, run_horizon, truncation)
from helpers.linear_problem import problem  # noqa: F401  (a module-scoped fixture, used by name)

from metaplastic.core import config as config_lib
from metaplastic.core.trainer import estimate_step
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.plugins.gradient_estimators.nres import NRES, NRESPairs
from metaplastic.plugins.gradient_estimators.pes import PES


HORIZON = TRUNCATION * NUM_TRUNCATIONS
SMALL = NRES(UNROLL, std=0.05, num_pairs=3)  # one object, one compile, for the state tests


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseFrom:
    """`estimator` with the start states of the key `init_state` is given, and ε from `noise_key`."""

    estimator: NRES
    noise_key: jax.Array

    def init_state(self, theta, key, arch, num_tasks, horizon):
        state = self.estimator.init_state(theta, key, arch, num_tasks, horizon)
        noise = self.estimator.init_state(theta, self.noise_key, arch, num_tasks, horizon).extra.perturbation
        return state.replace(extra=state.extra.replace(perturbation=noise))

    def estimate(self, theta, state, data, key):
        return self.estimator.estimate(theta, state, data, key)


def leaves_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def start(problem, estimator=SMALL, key=None):
    return estimator.init_state(problem["theta"], problem["init_key"] if key is None else key, ARCH,
                                NUM_TASKS, HORIZON)


def estimates(estimator, problem, state, indices, key=jax.random.PRNGKey(9)):
    grads = []
    for index in indices:
        grad, state, _ = estimator.estimate(problem["theta"], state, truncation(problem["data"], index),
                                            jax.random.fold_in(key, index))
        grads.append(grad)
    return grads, state


# ---------------------------------------------------------------- unbiasedness, variance

def test_nres_is_unbiased_over_the_horizon_where_the_truncated_gradient_is_not(problem):
    exact, truncated = problem["exact"], problem["truncated"]
    nres = NRES(UNROLL, std=0.05, num_pairs=64, max_loss_diff=1e6)  # no clipping: its bias is not under test
    keys = [jax.random.PRNGKey(100 + i) for i in range(30)]
    samples = [run_horizon(NoiseFrom(nres, key), problem, key)[0] for key in keys]
    mean, standard_error = mean_and_standard_error(samples)
    scale = np.linalg.norm(exact)
    # within 4 standard errors of the exact full-horizon gradient, and that error bar is tight
    assert np.all(np.abs(mean - exact) < 4 * standard_error), (mean, exact, standard_error)
    assert standard_error.max() < 0.05 * scale
    # and far from the truncated gradient (here: off by ≈ 23 standard errors in the worst entry)
    assert np.linalg.norm(mean - truncated) > 0.3 * scale, (mean, truncated)
    assert np.max(np.abs(mean - truncated) / standard_error) > 10, (mean, truncated, standard_error)


def test_nres_varies_less_than_pes_at_equal_unrolls(problem):
    """Each truncation's estimate (what a θ update uses), at the horizon's last truncation.

    To first order the variance ratio is (d+1)‖G‖² / (τ d Σ_s ‖g_s‖² + ‖G‖²) (see nres.py):
    near 1 when earlier truncations sway the loss as much as the current one. The yardstick's
    decay 0.8 gives ≈ 0.85, too close to 1 to resolve in seconds; decay 0.5 gives ≈ 0.55.
    (Summed over the whole horizon NRES is one-ε full-unroll ES and varies about 1.2–1.4× more
    than PES here.)
    """
    unroll = TruncatedUnroll(SecondMomentDrive(decay=0.5), HalfSquaredError())
    nres = NRES(unroll, std=0.05, num_pairs=4, max_loss_diff=1e6)
    pes = PES(unroll, std=0.05, num_pairs=4, max_loss_diff=1e6)  # same members unrolled per truncation
    last = NUM_TRUNCATIONS - 1
    samples = {"nres": [], "pes": []}
    for i in range(200):
        noise_key, key = jax.random.PRNGKey(10_000 + i), jax.random.PRNGKey(i)
        for name, estimator in (("nres", NoiseFrom(nres, noise_key)), ("pes", pes)):
            grads, _ = estimates(estimator, problem, start(problem, estimator), range(NUM_TRUNCATIONS), key)
            samples[name].append(np.asarray(grads[last]["drive"], np.float64))
    variance = {name: np.stack(s).var(0, ddof=1).sum() for name, s in samples.items()}
    ratio = variance["nres"] / variance["pes"]
    assert ratio < 0.75, f"NRES/PES variance ratio at truncation {last}: {ratio:.3f} (expected ≈ 0.55)"


# ---------------------------------------------------------------- the carried state

def test_resume_mid_horizon_is_bit_exact(problem):
    straight_grads, straight = estimates(SMALL, problem, start(problem), range(4))
    first_grads, halfway = estimates(SMALL, problem, start(problem), range(2))
    saved = jax.tree.map(np.array, flax.serialization.to_state_dict(halfway))  # host copies
    restored = flax.serialization.from_state_dict(start(problem, key=jax.random.PRNGKey(77)), saved)
    assert isinstance(restored.extra, NRESPairs) and int(restored.step_in_horizon) == 2 * TRUNCATION
    rest_grads, resumed = estimates(SMALL, problem, restored, range(2, 4))
    leaves_equal(first_grads + rest_grads, straight_grads)
    leaves_equal(resumed, straight)


def test_the_perturbation_is_reused_for_the_whole_horizon(problem):
    state = start(problem)
    eps = state.extra.perturbation
    assert eps["drive"].shape == (NUM_TASKS, SMALL.num_pairs) + problem["theta"]["drive"].shape
    after = state
    for index in range(NUM_TRUNCATIONS):
        _, after = estimates(SMALL, problem, after, [index])
        leaves_equal(after.extra.perturbation, eps)
    # the pairs have moved apart from θ's trajectory (they were unrolled with θ ± ε)
    assert not np.allclose(after.extra.positive.params["w"], after.extra.negative.params["w"])
    other = start(problem, key=jax.random.PRNGKey(123)).extra.perturbation
    assert not np.any(np.asarray(other["drive"]) == np.asarray(eps["drive"]))


def reset_tasks(state, fresh, mask):
    """Rows of `fresh` where mask [T] is True, `state`'s elsewhere, in every per-task leaf."""
    def row(old, new):
        return jnp.where(mask.reshape(mask.shape + (1,) * (old.ndim - 1)), new, old)
    return state.replace(inner=jax.tree.map(row, state.inner, fresh.inner),
                         extra=jax.tree.map(row, state.extra, fresh.extra))


def test_a_state_made_by_another_estimator_is_refused_also_as_the_trainer_compiles_it(problem):
    pes_state = start(problem, estimator=PES(UNROLL, std=0.05, num_pairs=3))
    arguments = (problem["theta"], pes_state, truncation(problem["data"], 0), jax.random.PRNGKey(0))
    for estimate in (SMALL.estimate, lambda *args: estimate_step(SMALL, *args)):
        with pytest.raises(ValueError, match="^nres: estimator state has no NRES pairs; it was not made by "):
            estimate(*arguments)


def test_per_task_reset_replaces_one_row_of_every_leaf(problem):
    _, state = estimates(SMALL, problem, start(problem), range(1))
    fresh = start(problem, key=jax.random.PRNGKey(55))
    reset = reset_tasks(state, fresh, jnp.arange(NUM_TASKS) == 0)
    for before, after, new in zip(*(jax.tree.leaves((s.inner, s.extra)) for s in (state, reset, fresh))):
        assert before.shape[0] == NUM_TASKS
        np.testing.assert_array_equal(after[1:], before[1:])  # task 1 untouched
        np.testing.assert_array_equal(after[0], new[0])       # task 0 starts afresh
    eps_old, eps_new = state.extra.perturbation["drive"], reset.extra.perturbation["drive"]
    assert not np.any(np.asarray(eps_new[0]) == np.asarray(eps_old[0]))
    # the tasks stay independent: task 1's next truncation does not see task 0's reset
    _, kept = estimates(SMALL, problem, state, [1])
    _, renewed = estimates(SMALL, problem, reset, [1])
    leaves_equal(jax.tree.map(lambda x: x[1], (renewed.inner, renewed.extra)),
                 jax.tree.map(lambda x: x[1], (kept.inner, kept.extra)))


# ---------------------------------------------------------------- guards

def test_non_finite_pairs_are_dropped_and_restart_keeping_their_perturbation(problem):
    theta = problem["theta"]
    threshold = float(jnp.max(theta["drive"])) + 0.02
    unroll = TruncatedUnroll(SecondMomentDrive(nan_above=threshold), HalfSquaredError())
    nres = NRES(unroll, std=0.05, num_pairs=8)
    state = start(problem, nres)
    eps = np.asarray(state.extra.perturbation["drive"])  # [T, pairs, D, F]
    drive = np.asarray(theta["drive"])
    crosses = ((drive + eps).max(axis=(2, 3)) > threshold) | ((drive - eps).max(axis=(2, 3)) > threshold)
    grad, state, metrics = nres.estimate(theta, state, truncation(problem["data"], 0), jax.random.PRNGKey(4))
    dropped = int(metrics["es_nonfinite_pairs"])
    assert 0 < dropped < NUM_TASKS * 8 and dropped == crosses.sum()  # exactly the pairs past the threshold
    assert np.all(np.isfinite(grad["drive"])) and np.isfinite(float(metrics["meta_loss"]))
    mean_w = np.asarray(state.inner.params["w"])[:, None]
    assert np.all(np.isfinite(mean_w))
    for side in (state.extra.positive, state.extra.negative):
        w = np.asarray(side.params["w"])
        assert np.all(np.isfinite(w))
        np.testing.assert_array_equal(np.broadcast_to(mean_w, w.shape)[crosses], w[crosses])  # restarted
        assert not np.any(np.all(np.broadcast_to(mean_w, w.shape) == w, axis=(2, 3))[~crosses])
    np.testing.assert_array_equal(state.extra.perturbation["drive"], eps)  # ε kept
    # so the same pairs are dropped again while the horizon lasts
    _, _, metrics = nres.estimate(theta, state, truncation(problem["data"], 1), jax.random.PRNGKey(5))
    assert int(metrics["es_nonfinite_pairs"]) == dropped


# ---------------------------------------------------------------- config, trainer

def test_config_builds_nres_and_meta_trains(tmp_path):
    from metaplastic.core.metrics import read_metrics
    from metaplastic.core.trainer import MetaTrainer

    overrides = ["--config.gradient_estimator=nres", "--config.gradient_estimator_config.num_pairs=2"]
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                                config_lib.parse_overrides(overrides))
    estimator = config_lib.build_components(config).estimator
    assert type(estimator) is NRES and (estimator.num_pairs, estimator.std) == (2, 0.01)
    with pytest.raises(ValueError, match="gradient_estimator_config.std"):
        NRES(UNROLL, std=0.0)
    MetaTrainer(config, tmp_path).run(progress=False)
    rows = read_metrics(tmp_path)
    assert len(rows) == config.num_steps == 6
    for row in rows:
        assert np.isfinite(row["meta_loss"]) and np.isfinite(row["meta_loss_last"]), row
        assert {"es_loss_diff", "es_clipped_fraction", "es_nonfinite_pairs", "nres_pair_loss_gap"} <= set(row)
