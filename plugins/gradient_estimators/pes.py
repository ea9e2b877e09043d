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

from metaplastic.core.estimation import (advance, es_combine, fresh_state, population, sample_perturbations,
                                         split_keys, split_population, tree_finite_per_pair, unroll_population,
                                         validate_es_fields)
from metaplastic.core.interfaces import GradientEstimator, InnerState, Pytree
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.registries import hookimpl


@flax.struct.dataclass
class PESPairs:
    positive: InnerState  # [T, pairs, ...]
    negative: InnerState  # [T, pairs, ...]
    accumulator: Pytree   # θ-shaped leaves [T, pairs, ...]


def _per_pair(tree: Pytree, num_pairs: int) -> Pytree:
    """[T, ...] -> [T, pairs, ...] copies."""
    return jax.tree.map(lambda x: jnp.repeat(jnp.expand_dims(x, 1), num_pairs, axis=1), tree)


def _select_pairs(keep: jax.Array, new: Pytree, fallback: Pytree) -> Pytree:
    """Per [T, pairs] entry: `new` where keep, else `fallback` (leaves [T, pairs, ...])."""
    def pick(a, b):
        return jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - keep.ndim)), a, b)
    return jax.tree.map(pick, new, fallback)


@functools.partial(jax.jit, static_argnames=("estimator",))
def _pes_step(estimator: "PES", theta, inner, pairs: PESPairs, data, key):
    num_tasks, num_pairs = data.unlabeled.shape[0], estimator.num_pairs
    perturbation_key, task_keys = split_keys(key, num_tasks)
    eps = sample_perturbations(theta, perturbation_key, estimator.std, num_tasks, num_pairs)
    accumulator = jax.tree.map(jnp.add, pairs.accumulator, eps)
    starts = jax.tree.map(lambda mean, pos, neg: jnp.concatenate([mean[:, None], pos, neg], axis=1),
                          inner, pairs.positive, pairs.negative)
    states, losses = unroll_population(estimator.unroll, population(theta, eps), starts, data, task_keys,
                                       shared_start=False)
    next_inner, pos, neg = split_population(states, num_pairs)
    losses, loss_pos, loss_neg = split_population(losses, num_pairs)  # [T, K], [T, pairs, K] x2
    loss_pos, loss_neg = jnp.mean(loss_pos, -1), jnp.mean(loss_neg, -1)
    usable = (jnp.isfinite(loss_pos) & jnp.isfinite(loss_neg)
              & tree_finite_per_pair(pos) & tree_finite_per_pair(neg))
    grad, metrics = es_combine(accumulator, loss_pos, loss_neg, usable, estimator.std,
                               estimator.max_loss_diff)
    restart = _per_pair(next_inner, num_pairs)
    zeros = jax.tree.map(jnp.zeros_like, accumulator)
    next_pairs = PESPairs(positive=_select_pairs(usable, pos, restart),
                          negative=_select_pairs(usable, neg, restart),
                          accumulator=_select_pairs(usable, accumulator, zeros))
    # how far the persistent pairs have drifted from θ's own trajectory, in meta-loss
    gap = jnp.where(usable, (loss_pos + loss_neg) / 2 - jnp.mean(losses, -1, keepdims=True), 0.0)
    metrics.update(meta_loss=jnp.mean(losses), meta_loss_last=jnp.mean(losses[:, -1]),
                   pes_pair_loss_gap=jnp.sum(gap) / jnp.maximum(jnp.sum(usable), 1))
    return grad, next_inner, next_pairs, metrics


@dataclasses.dataclass(frozen=True)
class PES(GradientEstimator):
    unroll: TruncatedUnroll
    std: float = 0.01           # perturbation standard deviation σ
    num_pairs: int = 4          # antithetic pairs per task, each with its own two inner states
    max_loss_diff: float = 1.0  # |L⁺ − L⁻| is clipped to this

    def __post_init__(self):
        validate_es_fields(self.std, self.num_pairs, self.max_loss_diff)

    def init_state(self, theta, key, arch, num_tasks, horizon):
        state = fresh_state(self.unroll, key, arch, num_tasks, horizon)
        start = _per_pair(state.inner, self.num_pairs)
        accumulator = jax.tree.map(
            lambda leaf: jnp.zeros((num_tasks, self.num_pairs) + jnp.shape(leaf), jnp.result_type(leaf)),
            theta)
        return state.replace(extra=PESPairs(positive=start, negative=start, accumulator=accumulator))

    def estimate(self, theta, state, data, key):
        if not isinstance(state.extra, PESPairs):
            raise ValueError("pes: estimator state has no PES pairs; it was not made by PES.init_state")
        grad, inner, pairs, metrics = _pes_step(self, theta, state.inner, state.extra, data, key)
        return grad, advance(state, inner, data.unlabeled.shape[1], extra=pairs), metrics


@hookimpl
def metaplastic_gradient_estimators():
    return {"pes": PES}
