"""Gradient estimators checked against a NumPy closed form of the meta-gradient.

Test problem (linear, so every gradient has a closed form): the base model is
a linear map u = x W; the rule drives W with the batch's second moment,
W ← ρ W + (xᵀx / B) Θ; the meta-loss is ½ mean ‖x_b W − y_b‖². The loss is
quadratic in Θ, so antithetic ES has no smoothing bias and must match the exact
gradient within its standard error, while truncated backprop, which ignores
how Θ shaped W before the truncation, is biased over a multi-truncation horizon.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.interfaces import (Architecture, BaseModel, InnerState, LabeledBatch,
                                         LayerActivation, MetaObjective, TruncationData, UpdateRule)
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.plugins.gradient_estimators.pes import PES, PESPairs
from metaplastic.plugins.gradient_estimators.truncated_backprop import TruncatedBackprop
from metaplastic.plugins.gradient_estimators.truncated_es import TruncatedES

INPUT_DIM, FEATURES = 3, 2
NUM_TASKS, TRUNCATION, NUM_TRUNCATIONS = 2, 2, 4
BATCH, META_BATCH = 8, 6
DECAY = 0.8


# ---------------------------------------------------------------- test-only components

@dataclasses.dataclass(frozen=True)
class LinearModel(BaseModel):
    def init(self, key, arch):
        return {"w": 0.3 * jax.random.normal(key, (arch.input_dim, arch.widths[-1]))}

    def apply(self, params, x):
        u = x @ params["w"]
        return [LayerActivation(u, u)]

    def layers(self, params):
        return [{"w": params["w"], "b": jnp.zeros(params["w"].shape[1:])}]

    def from_layers(self, params, layers):
        return {"w": layers[0]["w"]}


@dataclasses.dataclass(frozen=True)
class SecondMomentDrive(UpdateRule):
    """W ← ρ W + (xᵀx/B) Θ; non-finite whenever some Θ entry exceeds `nan_above`."""

    base_model: BaseModel = LinearModel()
    decay: float = DECAY
    nan_above: float = math.inf

    def init_theta(self, key):
        return {"drive": 0.2 * jax.random.normal(key, (INPUT_DIM, FEATURES))}

    def init_inner_state(self, key, arch):
        return InnerState(self.base_model.init(key, arch), None, jnp.zeros((), jnp.int32))

    def inner_step(self, theta, state, x, key):
        w = self.decay * state.params["w"] + (x.T @ x / x.shape[0]) @ theta["drive"]
        w = jnp.where(jnp.max(theta["drive"]) > self.nan_above, jnp.nan, w)
        return InnerState({"w": w}, None, state.step + 1)


@dataclasses.dataclass(frozen=True)
class HalfSquaredError(MetaObjective):
    def loss(self, features_fn, batch_a, batch_b):
        del batch_a
        return 0.5 * jnp.mean(jnp.sum(jnp.square(features_fn(batch_b.x) - batch_b.y), axis=1))


ARCH = Architecture(INPUT_DIM, (FEATURES,))
UNROLL = TruncatedUnroll(SecondMomentDrive(), HalfSquaredError())


def horizon_data(seed: int = 0) -> dict[str, np.ndarray]:
    """Per task, the whole horizon's batches: unlabelled [T, H, B, D], meta x [T, H, n, D], y [T, H, n, F]."""
    rng = np.random.default_rng(seed)
    steps = TRUNCATION * NUM_TRUNCATIONS
    target_w = rng.normal(size=(NUM_TASKS, 1, INPUT_DIM, FEATURES))
    x = rng.normal(size=(NUM_TASKS, steps, META_BATCH, INPUT_DIM))
    y = x @ target_w + 0.1 * rng.normal(size=(NUM_TASKS, steps, META_BATCH, FEATURES))
    unlabelled = rng.normal(size=(NUM_TASKS, steps, BATCH, INPUT_DIM))
    return {k: v.astype(np.float32) for k, v in dict(unlabelled=unlabelled, x=x, y=y).items()}


def truncation(data: dict, index: int) -> TruncationData:
    part = slice(index * TRUNCATION, (index + 1) * TRUNCATION)
    batch = LabeledBatch(data["x"][:, part], data["y"][:, part])
    return TruncationData(data["unlabelled"][:, part], batch, batch)


def closed_form_gradient(data: dict, w0: np.ndarray, drive: np.ndarray, truncated: bool) -> np.ndarray:
    """d/dΘ of the loss averaged over tasks and all horizon steps, in float64.

    Step h applies the rule then scores: W_{h+1} = ρ^{h+1} W_0 + Σ_{s≤h} ρ^{h−s} M_s Θ, so
    dL_h/dΘ = Σ_{s≤h} ρ^{h−s} M_s G_h with M_s = x_sᵀx_s/B and G_h = X_hᵀ(X_h W_{h+1} − Y_h)/n.
    `truncated` keeps only s in h's own truncation, as truncated backprop does.
    """
    unlabelled, x, y = (data[k].astype(np.float64) for k in ("unlabelled", "x", "y"))
    drive = drive.astype(np.float64)
    num_tasks, steps = unlabelled.shape[:2]
    grad = np.zeros_like(drive)
    for t in range(num_tasks):
        moments = [u.T @ u / u.shape[0] for u in unlabelled[t]]
        w = w0[t].astype(np.float64)
        for h in range(steps):
            w = DECAY * w + moments[h] @ drive
            g = x[t, h].T @ (x[t, h] @ w - y[t, h]) / x.shape[2]
            first = (h // TRUNCATION) * TRUNCATION if truncated else 0
            grad += sum(DECAY ** (h - s) * moments[s] @ g for s in range(first, h + 1))
    return grad / (num_tasks * steps)


@pytest.fixture(scope="module")
def problem():
    theta = SecondMomentDrive().init_theta(jax.random.PRNGKey(1))
    init_key = jax.random.PRNGKey(2)
    w0 = np.asarray(UNROLL.init(init_key, ARCH, NUM_TASKS).params["w"])
    data = horizon_data()
    exact = closed_form_gradient(data, w0, np.asarray(theta["drive"]), truncated=False)
    truncated = closed_form_gradient(data, w0, np.asarray(theta["drive"]), truncated=True)
    return dict(theta=theta, init_key=init_key, data=data, exact=exact, truncated=truncated)


def run_horizon(estimator, problem, key) -> tuple[np.ndarray, object]:
    """The estimates summed over the horizon's truncations (÷ count: the horizon-mean loss), θ fixed."""
    state = estimator.init_state(problem["theta"], problem["init_key"], ARCH, NUM_TASKS,
                                 TRUNCATION * NUM_TRUNCATIONS)
    total = np.zeros_like(problem["exact"])
    for index in range(NUM_TRUNCATIONS):
        data = truncation(problem["data"], index)
        grad, state, _ = estimator.estimate(problem["theta"], state, data, jax.random.fold_in(key, index))
        total += np.asarray(grad["drive"], np.float64)
    return total / NUM_TRUNCATIONS, state


def mean_and_standard_error(samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.stack(samples)
    return stacked.mean(0), stacked.std(0, ddof=1) / math.sqrt(len(samples))


# ---------------------------------------------------------------- unbiasedness against the closed form

def test_closed_form_matches_truncated_backprop(problem):
    """The NumPy reference reproduces autodiff's truncated gradient, so it can be trusted for the full one."""
    tbptt, state = run_horizon(TruncatedBackprop(UNROLL), problem, jax.random.PRNGKey(0))
    np.testing.assert_allclose(tbptt, problem["truncated"], rtol=1e-4, atol=1e-6)
    assert int(state.step_in_horizon) == TRUNCATION * NUM_TRUNCATIONS


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


def test_truncated_es_matches_the_truncated_gradient(problem):
    """From the carried state, ES estimates the gradient of one truncation with its start state held fixed."""
    theta, data = problem["theta"], problem["data"]
    es = TruncatedES(UNROLL, std=0.05, num_pairs=128, max_loss_diff=1e6)
    state = es.init_state(theta, problem["init_key"], ARCH, NUM_TASKS, 8)
    _, state, _ = es.estimate(theta, state, truncation(data, 0), jax.random.PRNGKey(5))
    # the carried state is the unperturbed θ's trajectory, the one truncated backprop carries too
    reference = TruncatedBackprop(UNROLL).init_state(theta, problem["init_key"], ARCH, NUM_TASKS, 8)
    _, reference, _ = TruncatedBackprop(UNROLL).estimate(theta, reference, truncation(data, 0),
                                                   jax.random.PRNGKey(5))
    np.testing.assert_allclose(state.inner.params["w"], reference.inner.params["w"], rtol=1e-5)

    second = truncation(data, 1)
    samples = [np.asarray(es.estimate(theta, state, second, jax.random.PRNGKey(200 + i))[0]["drive"],
                          np.float64) for i in range(30)]
    mean, standard_error = mean_and_standard_error(samples)
    grad_tbptt, _, _ = TruncatedBackprop(UNROLL).estimate(theta, reference, second, jax.random.PRNGKey(0))
    target = np.asarray(grad_tbptt["drive"], np.float64)
    assert np.all(np.abs(mean - target) < 4 * standard_error), (mean, target, standard_error)
    assert standard_error.max() < 0.05 * np.linalg.norm(target)


def test_es_is_deterministic_in_its_key(problem):
    es = PES(UNROLL, std=0.05, num_pairs=3)
    first, _ = run_horizon(es, problem, jax.random.PRNGKey(7))
    again, _ = run_horizon(es, problem, jax.random.PRNGKey(7))
    other, _ = run_horizon(es, problem, jax.random.PRNGKey(8))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


# ---------------------------------------------------------------- guards

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


# ---------------------------------------------------------------- state layout, config

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


def _config(*overrides):
    base = config_lib.load_config_file("experiments/train/digits.py:tiny")
    return config_lib.resolve(base, config_lib.parse_overrides(list(overrides)))


@pytest.mark.parametrize("name,expected", [("pes", PES), ("truncated_es", TruncatedES),
                                           ("truncated_backprop", TruncatedBackprop)])
def test_one_config_field_switches_the_estimator(name, expected):
    config = _config(f"--config.gradient_estimator={name}")
    assert type(config_lib.build_components(config).estimator) is expected
    if name != "truncated_backprop":
        config = _config(f"--config.gradient_estimator={name}",
                         "--config.gradient_estimator_config.num_pairs=3",
                         "--config.gradient_estimator_config.std=0.1")
        estimator = config_lib.build_components(config).estimator
        assert (estimator.num_pairs, estimator.std, estimator.max_loss_diff) == (3, 0.1, 1.0)


@pytest.mark.parametrize("field,value", [("std", "-0.1"), ("num_pairs", "0"), ("max_loss_diff", "0.0")])
def test_bad_es_config_is_one_line_naming_the_field(field, value):
    config = _config("--config.gradient_estimator=pes", f"--config.gradient_estimator_config.{field}={value}")
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.build_components(config).estimator
    message = str(error.value)
    assert "\n" not in message and f"gradient_estimator_config.{field}" in message and "pes" in message


# ---------------------------------------------------------------- checkpoint / resume

def test_pes_resume_mid_horizon_is_bit_identical(tmp_path):
    from metaplastic.core.trainer import MetaTrainer

    overrides = ("--config.gradient_estimator=pes", "--config.gradient_estimator_config.num_pairs=2",
                 "--config.checkpoint_every=100")
    straight = MetaTrainer(_config(*overrides, "--config.num_steps=6"), tmp_path / "straight")
    straight.run(progress=False)

    first = MetaTrainer(_config(*overrides, "--config.num_steps=3"), tmp_path / "resumed")
    first.run(progress=False)  # saves at exit: step 3, one truncation into the second 2-truncation horizon
    assert int(first.estimator_state.step_in_horizon) == 2 < int(first.estimator_state.horizon)
    accumulator = first.estimator_state.extra.accumulator
    assert any(np.any(np.asarray(a) != 0) for a in jax.tree.leaves(accumulator))

    second = MetaTrainer(_config(*overrides, "--config.num_steps=6"), tmp_path / "resumed")
    assert second.step == 3
    jax.tree.map(np.testing.assert_array_equal, second.estimator_state, first.estimator_state)
    second.run(progress=False)
    jax.tree.map(np.testing.assert_array_equal, second.theta, straight.theta)
    jax.tree.map(np.testing.assert_array_equal, second.estimator_state, straight.estimator_state)
