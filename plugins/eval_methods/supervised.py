"""`supervised` evaluation method: the same base model plus a softmax head, trained by backprop
on only the few labelled examples (full batch, cross-entropy) for the study's number of steps.
Its representation then gets the same readouts as every other method."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from metaplastic.core.documented import documented
from metaplastic.core.evaluation import BaseModelFeatures
from metaplastic.core.interfaces import EvalMethod
from metaplastic.registries import hookimpl

OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}


def _loss(model, params, x, y):
    logits = model.features(params["body"], x) @ params["head"]["w"] + params["head"]["b"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


@functools.partial(jax.jit, static_argnames=("model", "optimizer", "learning_rate"))
def _train(model, optimizer, learning_rate, params, opt_state, x, y, start, stop):
    tx = OPTIMIZERS[optimizer](learning_rate)

    def body(_, carry):
        params, opt_state = carry
        grad = jax.grad(lambda p: _loss(model, p, x, y))(params)
        updates, opt_state = tx.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.lax.fori_loop(start, stop, body, (params, opt_state))


@dataclasses.dataclass(frozen=True)
class Supervised(EvalMethod):
    uses_labels = True
    learning_rate: float = documented(1e-3, "step size of the optimiser")
    optimizer: str = documented("adam", "adam | sgd")

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown '{self.optimizer}' (known: {', '.join(OPTIMIZERS)})")

    def describe(self):
        return (f"the base model + softmax head trained by backprop ({self.optimizer}, "
                f"lr {self.learning_rate}) on the labelled examples only")

    def train(self, problem, steps):
        model = problem.base_model
        body = model.init(problem.init_key, problem.arch)
        top = problem.arch.widths[-1]
        params = {"body": body, "head": {"w": jnp.zeros((top, problem.num_classes)),
                                         "b": jnp.zeros((problem.num_classes,))}}
        opt_state = OPTIMIZERS[self.optimizer](self.learning_rate).init(params)
        x, y = jnp.asarray(problem.labeled_x), jnp.asarray(problem.labeled_y, jnp.int32)
        done = 0
        for target in steps:
            params, opt_state = _train(model, self.optimizer, self.learning_rate, params, opt_state,
                                       x, y, done, target)
            done = target
            yield target, BaseModelFeatures(model, params["body"])


@hookimpl
def metaplastic_eval_methods():
    return {"supervised": Supervised}
