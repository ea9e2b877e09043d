"""`truncated_es`: antithetic evolution strategies over one truncation of K inner steps.

For every task t and pair p, a perturbation ε ~ N(0, σ²I) of θ is drawn and the
truncation is unrolled twice, with θ+ε and θ−ε, from the task's current inner
state, on the same data and with the same unroll key. The estimate is

    g = mean_{t,p} ε_tp · clip(L⁺_tp − L⁻_tp) / (2σ²),

where L± is the meta-loss averaged over the truncation's K steps. It is the
gradient of the Gaussian-smoothed truncated loss; no backward pass is needed.

Carried state: the next truncation starts from the trajectory of the
unperturbed θ (one more forward unroll per task). learned_optimization carries
the positive perturbation's state instead, which saves that unroll but lets the
carried state drift with the random perturbations; carrying θ's own trajectory
keeps the state the one the learned rule actually produces, and makes
`meta_loss` the loss at θ, comparable with `truncated_backprop`.

θ and its 2·pairs perturbations form one population per task, unrolled in a
single vectorised scan.

Guards: loss differences are clipped to ±max_loss_diff (chaotic unrolls give
huge differences); a pair with a non-finite loss contributes zero and is
counted in `es_nonfinite_pairs`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from metaplastic.core.documented import documented
from metaplastic.core.estimation import (advance, es_combine, fresh_state, population, sample_perturbations,
                                         split_keys, split_population, unroll_population, validate_es_fields)
from metaplastic.core.interfaces import GradientEstimator
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.registries import hookimpl


@functools.partial(jax.jit, static_argnames=("estimator",))
def _truncated_es_step(estimator: "TruncatedES", theta, inner, data, key):
    num_tasks, num_pairs = data.unlabelled.shape[0], estimator.num_pairs
    perturbation_key, task_keys = split_keys(key, num_tasks)
    eps = sample_perturbations(theta, perturbation_key, estimator.std, num_tasks, num_pairs)
    states, losses = unroll_population(estimator.unroll, population(theta, eps), inner, data, task_keys,
                                       shared_start=True)
    next_inner = split_population(states, num_pairs)[0]
    losses, loss_pos, loss_neg = split_population(losses, num_pairs)  # [T, K], [T, pairs, K] x2
    loss_pos, loss_neg = jnp.mean(loss_pos, -1), jnp.mean(loss_neg, -1)
    usable = jnp.isfinite(loss_pos) & jnp.isfinite(loss_neg)
    grad, metrics = es_combine(eps, loss_pos, loss_neg, usable, estimator.std, estimator.max_loss_diff)
    metrics.update(meta_loss=jnp.mean(losses), meta_loss_last=jnp.mean(losses[:, -1]))
    return grad, next_inner, metrics


@dataclasses.dataclass(frozen=True)
class TruncatedES(GradientEstimator):
    unroll: TruncatedUnroll = documented(doc="supplied by the engine (the truncated unroll of config.schedule)")
    std: float = documented(0.01, "perturbation standard deviation σ")
    num_pairs: int = documented(4, "antithetic pairs per task")
    max_loss_diff: float = documented(1.0, "|L⁺ − L⁻| is clipped to this")

    def __post_init__(self):
        validate_es_fields(self.std, self.num_pairs, self.max_loss_diff)

    def init_state(self, theta, key, arch, num_tasks, horizon):
        del theta
        return fresh_state(self.unroll, key, arch, num_tasks, horizon)

    def estimate(self, theta, state, data, key):
        grad, inner, metrics = _truncated_es_step(self, theta, state.inner, data, key)
        return grad, advance(state, inner, data.unlabelled.shape[1]), metrics


@hookimpl
def metaplastic_gradient_estimators():
    return {"truncated_es": TruncatedES}
