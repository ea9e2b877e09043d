"""`pes`: Persistent Evolution Strategies (Vicol, Metz & Sohl-Dickstein, ICML 2021).

Like `truncated_es`, but every antithetic pair keeps its own two inner states
across truncations: the positive state has only ever been trained with θ+ε_1,
θ+ε_2, ..., the negative one with θ−ε_1, θ−ε_2, .... Each pair also keeps the
sum ξ = Σ_s ε_s of the perturbations applied since the horizon began, and
weights its loss difference by ξ instead of the latest ε:

    g = mean_{t,p} ξ_tp · clip(L⁺_tp − L⁻_tp) / (2σ²).

Because ξ accounts for how earlier perturbations shaped the current states,
the sum of the estimates over a horizon is unbiased for the gradient of the
whole unroll's loss (truncated backprop and truncated ES are not). The trainer
calls `init_state` at the horizon, which restarts the pairs and zeroes ξ.

State (all pytrees, so checkpoints hold them; T leads every per-task array):
  inner           [T, ...]         the unperturbed θ's trajectory (meta_loss, logging)
  extra.positive  [T, pairs, ...]  states trained with θ + ε
  extra.negative  [T, pairs, ...]  states trained with θ − ε
  extra.accumulator  θ-shaped leaves [T, pairs, ...]: ξ
A pair whose losses or states turn non-finite contributes zero and restarts
from the unperturbed trajectory with ξ = 0 (a fresh, biased-but-finite pair).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp

from metaplastic.core.documented import documented
from metaplastic.core.estimation import (advance, es_combine, fresh_state, pair_loss_gap, per_pair,
                                         sample_perturbations, select_pairs, split_keys, unroll_carried_pairs,
                                         validate_es_fields)
from metaplastic.core.interfaces import GradientEstimator, InnerState, Pytree
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.registries import hookimpl


@flax.struct.dataclass
class PESPairs:
    positive: InnerState  # [T, pairs, ...]
    negative: InnerState  # [T, pairs, ...]
    accumulator: Pytree   # θ-shaped leaves [T, pairs, ...]


@functools.partial(jax.jit, static_argnames=("estimator",))
def _pes_step(estimator: "PES", theta, inner, pairs: PESPairs, data, key):
    num_tasks, num_pairs = data.unlabelled.shape[0], estimator.num_pairs
    perturbation_key, task_keys = split_keys(key, num_tasks)
    eps = sample_perturbations(theta, perturbation_key, estimator.std, num_tasks, num_pairs)
    accumulator = jax.tree.map(jnp.add, pairs.accumulator, eps)
    run = unroll_carried_pairs(estimator.unroll, theta, eps, inner, pairs.positive, pairs.negative, data, task_keys)
    grad, metrics = es_combine(accumulator, run.loss_pos, run.loss_neg, run.usable, estimator.std,
                               estimator.max_loss_diff)
    restart = per_pair(run.inner, num_pairs)
    zeros = jax.tree.map(jnp.zeros_like, accumulator)
    next_pairs = PESPairs(positive=select_pairs(run.usable, run.positive, restart),
                          negative=select_pairs(run.usable, run.negative, restart),
                          accumulator=select_pairs(run.usable, accumulator, zeros))
    metrics.update(meta_loss=jnp.mean(run.losses), meta_loss_last=jnp.mean(run.losses[:, -1]),
                   pes_pair_loss_gap=pair_loss_gap(run))
    next_inner = run.inner
    return grad, next_inner, next_pairs, metrics


@dataclasses.dataclass(frozen=True)
class PES(GradientEstimator):
    unroll: TruncatedUnroll = documented(doc="supplied by the engine (the truncated unroll of config.schedule)")
    std: float = documented(0.01, "perturbation standard deviation σ")
    num_pairs: int = documented(4, "antithetic pairs per task, each with its own two inner states")
    max_loss_diff: float = documented(1.0, "|L⁺ − L⁻| is clipped to this")

    def __post_init__(self):
        validate_es_fields(self.std, self.num_pairs, self.max_loss_diff)

    def init_state(self, theta, key, arch, num_tasks, horizon):
        state = fresh_state(self.unroll, key, arch, num_tasks, horizon)
        start = per_pair(state.inner, self.num_pairs)
        accumulator = jax.tree.map(
            lambda leaf: jnp.zeros((num_tasks, self.num_pairs) + jnp.shape(leaf), jnp.result_type(leaf)),
            theta)
        return state.replace(extra=PESPairs(positive=start, negative=start, accumulator=accumulator))

    def estimate(self, theta, state, data, key):
        if not isinstance(state.extra, PESPairs):
            raise ValueError("pes: estimator state has no PES pairs; it was not made by PES.init_state")
        grad, inner, pairs, metrics = _pes_step(self, theta, state.inner, state.extra, data, key)
        return grad, advance(state, inner, data.unlabelled.shape[1], extra=pairs), metrics


@hookimpl
def metaplastic_gradient_estimators():
    return {"pes": PES}
