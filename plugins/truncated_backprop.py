"""`truncated_backprop`: meta-gradient by backprop through one truncation of K inner steps.

The meta-loss is the mean over the truncation's steps (and over tasks); the
inner state at the end seeds the next truncation. Biased by the truncation;
the trainer samples K and the horizon to limit the bias.
"""

from __future__ import annotations

import dataclasses
import functools

import jax

from metaplastic.core.interfaces import EstimatorState, GradientEstimator
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.registries import hookimpl


@functools.partial(jax.jit, static_argnames=("unroll",))
def _loss_and_grad(unroll: TruncatedUnroll, theta, states, data, key):
    (loss, (states, losses)), grad = jax.value_and_grad(unroll.batch_loss, has_aux=True)(
        theta, states, data, key)
    return loss, grad, states, losses


@dataclasses.dataclass(frozen=True)
class TruncatedBackprop(GradientEstimator):
    def init_state(self, unroll, theta, key, arch, num_tasks, horizon):
        del theta
        inner = unroll.init(key, arch, num_tasks)
        return EstimatorState(inner=inner, step_in_horizon=jax.numpy.zeros((), "int32"),
                              horizon=jax.numpy.asarray(horizon, "int32"))

    def estimate(self, unroll, theta, state, data, key):
        loss, grad, inner, losses = _loss_and_grad(unroll, theta, state.inner, data, key)
        steps = data.unlabeled.shape[1]
        state = state.replace(inner=inner, step_in_horizon=state.step_in_horizon + steps)
        return grad, state, {"meta_loss": loss, "meta_loss_last": losses[:, -1].mean()}


@hookimpl
def metaplastic_gradient_estimators():
    return {"truncated_backprop": TruncatedBackprop}
