"""What gradient estimators share: the fresh estimator state, and the antithetic-ES maths
(perturbations, populations, their vectorised unroll, the combined estimate).

Estimators are built around a `TruncatedUnroll` (`estimator.unroll`), as rules are built
around a base model; the maths here knows nothing of tasks.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metaplastic.core.interfaces import Architecture, EstimatorState, InnerState, Pytree
from metaplastic.core.unroll import TruncatedUnroll


def fresh_state(unroll: TruncatedUnroll, key: jax.Array, arch: Architecture, num_tasks: int,
                horizon: int, extra: Pytree = None) -> EstimatorState:
    """φ_0 for T tasks at the start of their horizon, plus estimator-private `extra`.

    `horizon`: one for all tasks (a scalar), or each task's own ([T], independent phases).
    """
    horizon = jnp.asarray(horizon, jnp.int32)
    return EstimatorState(inner=unroll.init(key, arch, num_tasks), step_in_horizon=jnp.zeros_like(horizon),
                          horizon=horizon, extra=extra)


@jax.jit
def reset_tasks(state: EstimatorState, fresh: EstimatorState, mask: jax.Array) -> EstimatorState:
    """`state` with the rows of tasks where `mask` [T] holds taken from `fresh` (every leaf with a
    leading T axis: inner states, per-task counters, estimator-private per-task state)."""
    def pick(old, new):
        if jnp.ndim(old) == 0 or old.shape[0] != mask.shape[0]:
            return old
        return jnp.where(mask.reshape(mask.shape + (1,) * (old.ndim - 1)), new, old)
    return jax.tree.map(pick, state, fresh)


def advance(state: EstimatorState, inner: InnerState, num_steps: int, extra: Pytree = None) -> EstimatorState:
    """The state after one truncation of `num_steps` inner steps."""
    return state.replace(inner=inner, step_in_horizon=state.step_in_horizon + num_steps,
                         extra=state.extra if extra is None else extra)


def validate_es_fields(std: float, num_pairs: int, max_loss_diff: float) -> None:
    if not std > 0:
        raise ValueError(f"gradient_estimator_config.std: must be > 0, got {std}")
    if not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"gradient_estimator_config.num_pairs: must be an int >= 1, got {num_pairs}")
    if not max_loss_diff > 0:
        raise ValueError(f"gradient_estimator_config.max_loss_diff: must be > 0, got {max_loss_diff}")


def sample_perturbations(theta: Pytree, key: jax.Array, std: float, num_tasks: int,
                         num_pairs: int) -> Pytree:
    """ε ~ N(0, std²) shaped like θ with leading [T, pairs] axes."""
    leaves, treedef = jax.tree.flatten(theta)
    keys = jax.random.split(key, max(len(leaves), 1))
    noise = [std * jax.random.normal(k, (num_tasks, num_pairs) + jnp.shape(leaf), jnp.result_type(leaf))
             for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, noise)


def tree_finite_per_pair(tree: Pytree, lead: int = 2) -> jax.Array:
    """[T, pairs] bools: every element of the pair's slice of every leaf is finite."""
    leaves = jax.tree.leaves(tree)
    checks = [jnp.all(jnp.isfinite(x).reshape(x.shape[:lead] + (-1,)), axis=-1) for x in leaves
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return functools.reduce(jnp.logical_and, checks)


def population(theta: Pytree, perturbations: Pytree) -> Pytree:
    """[T, 1 + 2·pairs, ...]: θ itself, then θ + ε for every pair, then θ − ε."""
    def build(leaf, eps):
        unperturbed = jnp.broadcast_to(leaf, eps.shape[:1] + (1,) + jnp.shape(leaf))
        return jnp.concatenate([unperturbed, leaf + eps, leaf - eps], axis=1)
    return jax.tree.map(build, theta, perturbations)


def unroll_population(unroll: TruncatedUnroll, thetas: Pytree, states: InnerState, data,
                      task_keys: jax.Array, shared_start: bool) -> tuple[InnerState, jax.Array]:
    """Unroll every member of every task's population in one vectorised scan.

    `thetas` [T, M, ...]; `states` [T, ...] when every member starts from its task's
    state (`shared_start`), else [T, M, ...]. All members of a task see the same
    data and unroll key. Returns next states [T, M, ...] and losses [T, M, K].
    """
    def one_task(task_thetas, task_states, task_data, key):
        member = lambda theta, state: unroll.unroll(theta, state, task_data, key)
        return jax.vmap(member, in_axes=(0, None if shared_start else 0))(task_thetas, task_states)

    return jax.vmap(one_task)(thetas, states, data, task_keys)


def split_population(tree: Pytree, num_pairs: int) -> tuple[Pytree, Pytree, Pytree]:
    """[T, 1 + 2·pairs, ...] -> (θ's [T, ...], positive [T, pairs, ...], negative [T, pairs, ...])."""
    return (jax.tree.map(lambda x: x[:, 0], tree),
            jax.tree.map(lambda x: x[:, 1:1 + num_pairs], tree),
            jax.tree.map(lambda x: x[:, 1 + num_pairs:], tree))


def es_combine(directions: Pytree, loss_pos: jax.Array, loss_neg: jax.Array, usable: jax.Array,
               std: float, max_loss_diff: float) -> tuple[Pytree, dict]:
    """mean_{t,p} direction · clip(L⁺ − L⁻) / (2σ²), skipping unusable pairs; plus diagnostics."""
    diff = jnp.where(usable, loss_pos - loss_neg, 0.0)
    clipped = jnp.clip(diff, -max_loss_diff, max_loss_diff)
    weight = clipped / (2.0 * std**2 * diff.size)
    grad = jax.tree.map(lambda d: jnp.tensordot(weight, d, axes=2).astype(d.dtype), directions)
    num_usable = jnp.maximum(jnp.sum(usable), 1)
    metrics = {
        "es_loss_diff": jnp.sum(jnp.abs(diff)) / num_usable,
        "es_clipped_fraction": jnp.sum(usable & (jnp.abs(diff) > max_loss_diff)) / num_usable,
        "es_nonfinite_pairs": jnp.sum(~usable),
    }
    return grad, metrics


def split_keys(key: jax.Array, num_tasks: int) -> tuple[jax.Array, jax.Array]:
    """(perturbation key, per-task unroll keys [T])."""
    perturbation_key, unroll_key = jax.random.split(key)
    # the per-task keys TruncatedUnroll.batch_loss would derive from `unroll_key`
    return perturbation_key, jax.random.split(unroll_key, num_tasks)


def per_pair(tree: Pytree, num_pairs: int) -> Pytree:
    """[T, ...] -> [T, pairs, ...]: every pair gets a copy of its task's leaf."""
    return jax.tree.map(lambda x: jnp.repeat(jnp.expand_dims(x, 1), num_pairs, axis=1), tree)


def select_pairs(keep: jax.Array, new: Pytree, fallback: Pytree) -> Pytree:
    """Per [T, pairs] entry of `keep`: `new` where True, else `fallback` (leaves [T, pairs, ...])."""
    def pick(a, b):
        return jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - keep.ndim)), a, b)
    return jax.tree.map(pick, new, fallback)


class CarriedPairs(NamedTuple):
    """One truncation of θ's trajectory and of antithetic pairs that carry their own states."""

    inner: InnerState    # θ's next states [T, ...]
    positive: InnerState  # next states of θ + ε [T, pairs, ...]
    negative: InnerState  # next states of θ − ε [T, pairs, ...]
    losses: jax.Array     # θ's losses [T, K]
    loss_pos: jax.Array   # mean loss over the truncation [T, pairs]
    loss_neg: jax.Array   # [T, pairs]
    usable: jax.Array     # [T, pairs]: the pair's losses and states are finite


def unroll_carried_pairs(unroll: TruncatedUnroll, theta: Pytree, eps: Pytree, inner: InnerState,
                         positive: InnerState, negative: InnerState, data, task_keys: jax.Array) -> CarriedPairs:
    """θ from `inner`, θ + ε from `positive` and θ − ε from `negative`, in one vectorised scan
    (PES and NRES: pairs whose states persist over the horizon)."""
    num_pairs = jax.tree.leaves(positive)[0].shape[1]
    starts = jax.tree.map(lambda mean, pos, neg: jnp.concatenate([mean[:, None], pos, neg], axis=1),
                          inner, positive, negative)
    states, losses = unroll_population(unroll, population(theta, eps), starts, data, task_keys,
                                       shared_start=False)
    next_inner, pos, neg = split_population(states, num_pairs)
    losses, loss_pos, loss_neg = split_population(losses, num_pairs)  # [T, K], [T, pairs, K] x2
    loss_pos, loss_neg = jnp.mean(loss_pos, -1), jnp.mean(loss_neg, -1)
    usable = (jnp.isfinite(loss_pos) & jnp.isfinite(loss_neg)
              & tree_finite_per_pair(pos) & tree_finite_per_pair(neg))
    return CarriedPairs(next_inner, pos, neg, losses, loss_pos, loss_neg, usable)


def pair_loss_gap(run: CarriedPairs) -> jax.Array:
    """How far the usable pairs' trajectories have drifted from θ's own, in meta-loss."""
    gap = jnp.where(run.usable, (run.loss_pos + run.loss_neg) / 2 - jnp.mean(run.losses, -1, keepdims=True), 0.0)
    return jnp.sum(gap) / jnp.maximum(jnp.sum(run.usable), 1)
