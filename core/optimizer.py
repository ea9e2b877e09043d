"""The meta-optimiser: what turns a meta-gradient into a θ update (clipping, then Adam), skipping any
update that is not finite."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from metaplastic.core.interfaces import Pytree


def _scale_per_element(rates: Pytree) -> optax.GradientTransformation:
    """Multiply the updates by `rates` (a pytree shaped like θ), a constant: not optimiser state."""
    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda rate, u: jnp.asarray(rate, u.dtype) * u, rates, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def make_optimizer(config: ml_collections.ConfigDict,
                   genome_mask: Pytree | None = None) -> optax.GradientTransformation:
    """Global-norm clipping, per-parameter clipping (when on), then Adam; θ's genome elements
    (`genome_mask`, from `UpdateRule.genome_mask`) at their own learning rate when set.

    The state keeps one layout (clipping's, then Adam's) whatever is on, so a snapshot continues
    with per-parameter clipping or a genome learning rate switched on."""
    settings = config.optimizer
    learning_rate, eps = settings.learning_rate, settings.get("eps", 1e-8)
    genome_learning_rate = settings.get("genome_learning_rate", 0.0)
    clip = optax.clip_by_global_norm(settings.clip_norm)
    if settings.get("clip_per_parameter", 0.0) > 0:
        clip = optax.chain(clip, optax.clip(settings.clip_per_parameter))
    if genome_learning_rate > 0:
        if genome_mask is None:
            raise ValueError("config.optimizer.genome_learning_rate is set but make_optimizer got no genome_mask")
        rates = jax.tree.map(lambda mask: np.where(mask, -genome_learning_rate, -learning_rate), genome_mask)
        adam = optax.chain(optax.scale_by_adam(eps=eps), _scale_per_element(rates))
    else:
        adam = optax.adam(learning_rate, eps=eps)
    return optax.chain(clip, adam)


def _tree_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def make_update_fn(optimizer: optax.GradientTransformation, sharding=None):
    """Jitted θ update that leaves θ and the optimiser untouched when anything is non-finite.

    `sharding` (e.g. replicated over a mesh) fixes where every output lives.
    """

    @functools.partial(jax.jit, out_shardings=sharding)
    def update(theta, opt_state, grad, loss):
        ok = jnp.isfinite(loss) & _tree_finite(grad)
        safe_grad = jax.tree.map(lambda g: jnp.where(ok, g, 0.0), grad)
        updates, new_opt_state = optimizer.update(safe_grad, opt_state, theta)
        new_theta = optax.apply_updates(theta, updates)
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        return pick(new_theta, theta), pick(new_opt_state, opt_state), ok, optax.tree.norm(safe_grad)

    return update

