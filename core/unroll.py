"""Running an update rule: the truncated step of meta-training, and the inner loop everything else uses.

- `TruncatedUnroll`: K inner steps of a rule on one task, scored by a meta-objective after each
  step (what gradient estimators differentiate or perturb). It knows the rule and the
  objective, nothing about tasks or estimators; hashable, so it can be a static jit argument.
- `run_inner_steps`: inner steps start..stop-1 of a rule, the batch and key of step t given by a
  function of t: the one loop that evaluation (`core.evaluation`) and fitting (`core.rules`) run.
- `trajectory_losses`: a whole inner run scored at log-spaced points (genome-first training, validation).
- `rule_features`: the jitted features of a rule's base model.
Everything here is pure and jit-able.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from metaplastic.core.interfaces import (Architecture, InnerState, MetaObjective, Pytree,
                                         TruncationData, UpdateRule)


def segment_length(num_steps: int) -> int:
    """Steps per rematerialised segment: about √K, which minimises K/S + S stored states."""
    return max(1, round(math.sqrt(num_steps)))


@dataclasses.dataclass(frozen=True)
class TruncatedUnroll:
    rule: UpdateRule
    objective: MetaObjective
    # Rematerialise in the backward pass: the unroll is cut into segments of about √K steps and
    # only the inner state at each segment boundary (and, while a segment is differentiated,
    # at each of its steps) is kept, so memory grows as √K instead of K at the price of
    # recomputing each inner step twice.
    remat: bool = False
    # Inner steps per iteration of the scan's loop (`lax.scan(unroll=)`): more straight-line code
    # for XLA to fuse across steps, at a longer compile. 1 is a plain scan.
    scan_unroll: int = 1

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

        num_steps = data.unlabelled.shape[0]
        inputs = (data.unlabelled, data.meta_a, data.meta_b, jax.random.split(key, num_steps))
        if not self.remat:
            return jax.lax.scan(step, state, inputs, unroll=self.scan_unroll)
        return _segmented_scan(jax.checkpoint(step), state, inputs, segment_length(num_steps), self.scan_unroll)

    def batch_loss(self, theta: Pytree, states: InnerState, data: TruncationData,
                   key: jax.Array) -> tuple[jax.Array, tuple[InnerState, jax.Array]]:
        """T tasks: (mean meta-loss, (next states [T], losses [T, K]))."""
        keys = jax.random.split(key, data.unlabelled.shape[0])
        states, losses = jax.vmap(self.unroll, in_axes=(None, 0, 0, 0))(theta, states, data, keys)
        return jnp.mean(losses), (states, losses)


def run_inner_steps(rule: UpdateRule, theta: Pytree, state: InnerState, inputs_at, start, stop) -> InnerState:
    """φ after inner steps start..stop-1; `inputs_at(t)` -> (unlabelled batch x_t [B, D], key_t).

    Not jitted itself: callers jit it with their own `inputs_at` (no labels ever reach the rule).
    """
    def body(t, state):
        x, key = inputs_at(t)
        return rule.inner_step(theta, state, x, key)

    return jax.lax.fori_loop(start, stop, body, state)


def trajectory_losses(rule: UpdateRule, objective: MetaObjective, theta: Pytree, state: InnerState,
                      unlabelled: jax.Array, meta_a, meta_b, points: tuple[int, ...], key: jax.Array) -> jax.Array:
    """A whole inner run, scored along the way: the meta-loss after each of `points` (ascending inner-step
    counts) [P], fitting on meta_a[i] and scoring on meta_b[i] ([P, n, ...]) at points[i].

    `unlabelled` [max(points), B, D] holds the batch of every inner step; no labels reach the rule.
    The objective of genome-first training and of meta-validation: a rule that peaks and then falls
    is seen falling.
    """
    keys, unlabelled = jax.random.split(key, max(points)), jnp.asarray(unlabelled)
    losses, start = [], 0
    for i, point in enumerate(points):
        state = run_inner_steps(rule, theta, state, lambda t: (unlabelled[t], keys[t]), start, point)
        batch_a, batch_b = jax.tree.map(lambda a: a[i], (meta_a, meta_b))
        losses.append(objective.loss(functools.partial(rule.features, state), batch_a, batch_b))
        start = point
    return jnp.stack(losses)


@functools.partial(jax.jit, static_argnames=("rule",))
def rule_features(rule: UpdateRule, state: InnerState, x: jax.Array) -> jax.Array:
    return rule.features(state, x)


@functools.partial(jax.jit, static_argnames=("unroll", "label_dim"))
def labels_only_loss(unroll: TruncatedUnroll, states: InnerState, data: TruncationData, label_dim: int) -> jax.Array:
    """Mean meta-loss over T tasks of the truncation's last meta batches, scored on the class-label
    target columns only (diagnostic: how much of the meta-loss is the labels, not the regression targets)."""
    def one(state, batch_a, batch_b):
        def labels(batch):
            return type(batch)(batch.x[-1], batch.y[-1, :, :label_dim])
        return unroll.objective.loss(functools.partial(unroll.rule.features, state), labels(batch_a), labels(batch_b))
    return jnp.mean(jax.vmap(one)(states, data.meta_a, data.meta_b))


def _segmented_scan(step, carry, inputs, length: int, scan_unroll: int = 1):
    """`lax.scan(step, carry, inputs)` as a scan over checkpointed segments of `length` steps."""
    total = jax.tree.leaves(inputs)[0].shape[0]
    segments, tail = divmod(total, length)

    @jax.checkpoint
    def segment(carry, segment_inputs):
        return jax.lax.scan(step, carry, segment_inputs, unroll=min(scan_unroll, length))

    head = jax.tree.map(lambda a: a[:segments * length].reshape((segments, length) + a.shape[1:]), inputs)
    carry, outputs = jax.lax.scan(segment, carry, head)
    outputs = jax.tree.map(lambda a: a.reshape((segments * length,) + a.shape[2:]), outputs)
    if tail:
        carry, tail_outputs = segment(carry, jax.tree.map(lambda a: a[segments * length:], inputs))
        outputs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), outputs, tail_outputs)
    return carry, outputs
