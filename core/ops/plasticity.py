"""Hand-designed Hebbian weight-change directions, shared by the `hebbian` rule and the prior of `metz2019`.

Every direction is a pre × post product of one layer's input x [B, n_in] and its units'
activity, so a rule built from them is neuron-local and works at any width and depth.
s = mean_b ‖x̄_b‖² (x̄: x centred over the batch) makes each direction scale-free.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def unit_columns(w: jax.Array) -> jax.Array:
    """Each column of w [n_in, n_out] rescaled to unit L2 norm (Oja's normalisation)."""
    return w * jax.lax.rsqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True) + 1e-12)


def centred_and_power(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x centred over the batch, s = mean squared row norm of the centred x)."""
    centred = x - jnp.mean(x, axis=0, keepdims=True)
    return centred, jnp.mean(jnp.sum(jnp.square(centred), axis=1)) + 1e-12


def sanger_update(w: jax.Array, x: jax.Array) -> jax.Array:
    """Sanger's generalised Hebbian direction (x̄ᵀy − W·triu(yᵀy)) / (B s), y = x̄ W, for w [n_in, n_out]."""
    centred, power = centred_and_power(x)
    y = centred @ w
    return (centred.T @ y - w @ jnp.triu(y.T @ y)) / (x.shape[0] * power)


def competitive_update(x: jax.Array, pre: jax.Array, temperature) -> jax.Array:
    """Soft competitive Hebbian direction x̄ᵀ softmax(pre / temperature) / (B √s) [n_in, n_out], from
    inputs x [B, n_in] and the layer's pre-activations pre [B, n_out]."""
    centred, power = centred_and_power(x)
    wins = jax.nn.softmax(pre / temperature, axis=1)
    return centred.T @ wins / (x.shape[0] * jnp.sqrt(power))
