"""The truncated step: K inner steps of an update rule on one task, scored by a meta-objective.

Gradient estimators build on `TruncatedUnroll`; it knows the rule and the
objective, nothing about tasks or estimators. Everything here is pure and
jit-able; `TruncatedUnroll` is hashable so it can be a static jit argument.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from metaplastic.core.interfaces import (Architecture, InnerState, MetaObjective, Pytree,
                                         TruncationData, UpdateRule)


@dataclasses.dataclass(frozen=True)
class TruncatedUnroll:
    rule: UpdateRule
    objective: MetaObjective
    remat: bool = False  # recompute each inner step in the backward pass (memory ~ O(1) in K)

    def init(self, key: jax.Array, arch: Architecture, num_tasks: int) -> InnerState:
        """φ_0 for T tasks, stacked on a leading axis."""
        keys = jax.random.split(key, num_tasks)
        return jax.vmap(self.rule.init_inner_state, in_axes=(0, None))(keys, arch)

    def unroll(self, theta: Pytree, state: InnerState, data: TruncationData,
               key: jax.Array) -> tuple[InnerState, jax.Array]:
        """One task: (φ after K steps, meta-loss after each step [K])."""

        def step(state, inputs):
            x, batch_a, batch_b, step_key = inputs
            state = self.rule.inner_step(theta, state, x, step_key)
            loss = self.objective.loss(functools.partial(self.rule.features, state), batch_a, batch_b)
            return state, loss

        if self.remat:
            step = jax.checkpoint(step)
        keys = jax.random.split(key, data.unlabeled.shape[0])
        return jax.lax.scan(step, state, (data.unlabeled, data.meta_a, data.meta_b, keys))

    def batch_loss(self, theta: Pytree, states: InnerState, data: TruncationData,
                   key: jax.Array) -> tuple[jax.Array, tuple[InnerState, jax.Array]]:
        """T tasks: (mean meta-loss, (next states [T], losses [T, K]))."""
        keys = jax.random.split(key, data.unlabeled.shape[0])
        states, losses = jax.vmap(self.unroll, in_axes=(None, 0, 0, 0))(theta, states, data, keys)
        return jnp.mean(losses), (states, losses)
