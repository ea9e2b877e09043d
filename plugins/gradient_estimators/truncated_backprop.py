"""`truncated_backprop`: meta-gradient by backprop through one truncation of K inner steps.

The meta-loss is the mean over the truncation's steps (and over tasks); the
inner state at the end seeds the next truncation. Biased by the truncation;
the trainer samples K and the horizon to limit the bias.
"""

from __future__ import annotations

import dataclasses
import functools

import jax

from metaplastic.core.documented import documented
from metaplastic.core.estimation import advance, fresh_state
from metaplastic.core.interfaces import GradientEstimator
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.registries import hookimpl


@functools.partial(jax.jit, static_argnames=("unroll",))
def _loss_and_grad(unroll: TruncatedUnroll, theta, states, data, key):
    (loss, (states, losses)), grad = jax.value_and_grad(unroll.batch_loss, has_aux=True)(
        theta, states, data, key)
    return loss, grad, states, losses


@dataclasses.dataclass(frozen=True)
class TruncatedBackprop(GradientEstimator):
    unroll: TruncatedUnroll = documented(doc="supplied by the engine (the truncated unroll of config.schedule)")

    def init_state(self, theta, key, arch, num_tasks, horizon):
        del theta
        return fresh_state(self.unroll, key, arch, num_tasks, horizon)

    def estimate(self, theta, state, data, key):
        loss, grad, inner, losses = _loss_and_grad(self.unroll, theta, state.inner, data, key)
        return grad, advance(state, inner, data.unlabelled.shape[1]), {
            "meta_loss": loss, "meta_loss_last": losses[:, -1].mean()}


@hookimpl
def metaplastic_gradient_estimators():
    return {"truncated_backprop": TruncatedBackprop}
