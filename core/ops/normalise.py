"""Normalisations with hand-written backward passes.

JAX's reverse mode of a normalisation keeps several full-size intermediates (the centred input,
the normalised output, the ReLU mask) and, inside an inner-step scan, stacks each of them per
step. These versions keep only their input (plus per-channel statistics) and recompute the rest
in the backward pass, which is memory-bound work done once instead of stored and read back.
Same maths as the plain forms below them (tests/core/ops/test_normalise.py checks both against each other,
against `jax.grad` and by finite differences).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _reduced_axes(a):
    return tuple(range(a.ndim - 1))


# ------------------------------------------------------------------ batch norm (+ ReLU)

def batch_norm_plain(a, offset, eps, relu=False):
    """(a − mean) / √(var + eps) + offset over every axis but the last (batch statistics); ReLU if asked."""
    axes = _reduced_axes(a)
    mean = jnp.mean(a, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(a - mean), axis=axes, keepdims=True)
    out = (a - mean) * jax.lax.rsqrt(var + eps) + offset
    return jax.nn.relu(out) if relu else out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def batch_norm(a, offset, eps, relu=False):
    """`batch_norm_plain` with a backward pass that stores only `a` and two statistics per channel."""
    return batch_norm_plain(a, offset, eps, relu)


def _batch_norm_stats(a, eps):
    axes = _reduced_axes(a)
    mean = jnp.mean(a, axis=axes, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.mean(jnp.square(a - mean), axis=axes, keepdims=True) + eps)
    return mean, rstd


def _batch_norm_fwd(a, offset, eps, relu):
    mean, rstd = _batch_norm_stats(a, eps)
    out = (a - mean) * rstd + offset
    return (jax.nn.relu(out) if relu else out), (a, offset, mean, rstd)


def _batch_norm_bwd(eps, relu, residuals, g):
    a, offset, mean, rstd = residuals
    axes = _reduced_axes(a)
    normalised = (a - mean) * rstd
    if relu:  # jax.nn.relu's derivative is 0 at 0
        g = jnp.where(normalised + offset > 0, g, jnp.zeros_like(g))
    d_offset = jnp.sum(g, axis=axes).reshape(jnp.shape(offset)) if jnp.ndim(offset) else jnp.sum(g)
    d_a = rstd * (g - jnp.mean(g, axis=axes, keepdims=True)
                  - normalised * jnp.mean(g * normalised, axis=axes, keepdims=True))
    return d_a, d_offset


batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


# ------------------------------------------------------------------ RMS normalisation

def rms_normalise_plain(t, axis, eps):
    """t / √(eps + mean of t² over `axis`)."""
    return t * jax.lax.rsqrt(eps + jnp.mean(jnp.square(t), axis=axis, keepdims=True))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def rms_normalise(t, axis, eps):
    """`rms_normalise_plain` with a backward pass that stores only `t` and the scale."""
    return rms_normalise_plain(t, axis, eps)


def _rms_fwd(t, axis, eps):
    scale = jax.lax.rsqrt(eps + jnp.mean(jnp.square(t), axis=axis, keepdims=True))
    return t * scale, (t, scale)


def _rms_bwd(axis, eps, residuals, g):
    t, scale = residuals
    # y = t·s, s = (eps + mean t²)^(-1/2):  dt = s·(g − t·s²·mean(g·t))
    return (scale * (g - t * jnp.square(scale) * jnp.mean(g * t, axis=axis, keepdims=True)),)


rms_normalise.defvjp(_rms_fwd, _rms_bwd)
