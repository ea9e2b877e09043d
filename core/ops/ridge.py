"""Closed-form ridge regression with an unpenalised bias: the readout the meta-objective and every
evaluation readout share."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ridge_fit(features: jax.Array, targets: jax.Array, ridge_lambda: float) -> jax.Array:
    """Weights [F+1, C] of ridge regression with an unpenalised bias (last row)."""
    design = jnp.concatenate([features, jnp.ones_like(features[:, :1])], axis=1)
    penalty = jnp.ones(design.shape[1]).at[-1].set(0.0)
    gram = design.T @ design + ridge_lambda * jnp.diag(penalty)
    return jax.scipy.linalg.solve(gram, design.T @ targets, assume_a="pos")


def ridge_predict(weights: jax.Array, features: jax.Array) -> jax.Array:
    return features @ weights[:-1] + weights[-1]
