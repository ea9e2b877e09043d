"""The gradient estimators' test problem, with a NumPy closed form of the meta-gradient.

Test problem (linear, so every gradient has a closed form): the base model is
a linear map u = x W; the rule drives W with the batch's second moment,
W ← ρ W + (xᵀx / B) Θ; the meta-loss is ½ mean ‖x_b W − y_b‖². The loss is
quadratic in Θ, so antithetic ES has no smoothing bias and must match the exact
gradient within its standard error, while truncated backprop, which ignores
how Θ shaped W before the truncation, is biased over a multi-truncation horizon.

`problem` is module-scoped: one closed form per test module.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.interfaces import (Architecture, BaseModel, InnerState, LabeledBatch, LayerActivation,
                                         MetaObjective, TruncationData, UpdateRule)
from metaplastic.core.unroll import TruncatedUnroll


INPUT_DIM, FEATURES = 3, 2
NUM_TASKS, TRUNCATION, NUM_TRUNCATIONS = 2, 2, 4
BATCH, META_BATCH = 8, 6
DECAY = 0.8


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


def tiny_digits_config(*overrides):
    base = config_lib.load_config_file("experiments/train/digits.py:tiny")
    return config_lib.resolve(base, config_lib.parse_overrides(list(overrides)))
