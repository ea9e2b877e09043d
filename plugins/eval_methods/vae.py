"""`vae` evaluation method: an MLP variational autoencoder trained on the same unlabelled batches
for the same number of steps; the representation is the posterior mean.

Encoder: the architecture's hidden widths (Dense + ReLU), then mean and
log-variance of a Gaussian posterior with the representation width. Decoder:
the hidden widths reversed. Pixels are Bernoulli (inputs in [0, 1]) or
Gaussian with a learned per-input scale (`likelihood="auto"` picks by range).
Loss: the negative ELBO (one reparameterised sample) per example, by Adam.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from metaplastic.core.documented import documented
from metaplastic.core.evaluation import unlabelled_batch
from metaplastic.core.interfaces import EvalMethod, FeatureModel
from metaplastic.registries import hookimpl

LIKELIHOODS = ("auto", "bernoulli", "gaussian")


class _Encoder(nn.Module):
    hidden: tuple[int, ...]
    latent: int

    @nn.compact
    def __call__(self, x):
        for i, units in enumerate(self.hidden):
            x = nn.relu(nn.Dense(units, name=f"hidden_{i}")(x))
        return nn.Dense(self.latent, name="mean")(x), nn.Dense(self.latent, name="log_var")(x)


class _Decoder(nn.Module):
    hidden: tuple[int, ...]
    output: int

    @nn.compact
    def __call__(self, z):
        for units in reversed(self.hidden):
            z = nn.relu(nn.Dense(units)(z))
        return nn.Dense(self.output)(z)


def _negative_elbo(params, x, key, hidden, latent, likelihood):
    mean, log_var = _Encoder(hidden, latent).apply({"params": params["encoder"]}, x)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    out = _Decoder(hidden, x.shape[1]).apply({"params": params["decoder"]}, z)
    if likelihood == "bernoulli":
        nll = jnp.sum(optax.sigmoid_binary_cross_entropy(out, x), axis=1)
    else:
        log_scale = params["log_scale"]
        nll = jnp.sum(0.5 * jnp.square((x - out) * jnp.exp(-log_scale)) + log_scale
                      + 0.5 * jnp.log(2 * jnp.pi), axis=1)
    kl = 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=1)
    return jnp.mean(nll + kl)


@functools.partial(jax.jit, static_argnames=("hidden", "latent", "likelihood", "learning_rate", "batch_size"))
def _train(params, opt_state, pool, data_key, noise_key, start, stop, hidden, latent, likelihood,
           learning_rate, batch_size):
    tx = optax.adam(learning_rate)

    def body(t, carry):
        params, opt_state = carry
        x = unlabelled_batch(pool, data_key, t, batch_size)
        grad = jax.grad(_negative_elbo)(params, x, jax.random.fold_in(noise_key, t), hidden, latent,
                                        likelihood)
        updates, opt_state = tx.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.lax.fori_loop(start, stop, body, (params, opt_state))


@functools.partial(jax.jit, static_argnames=("hidden", "latent"))
def _posterior_mean(encoder_params, x, hidden, latent):
    return _Encoder(hidden, latent).apply({"params": encoder_params}, x)[0]


class _VAEFeatures(FeatureModel):
    def __init__(self, params, hidden, latent):
        self.params, self.hidden, self.latent = params, hidden, latent

    def features(self, x):
        return np.asarray(_posterior_mean(self.params["encoder"], jnp.asarray(x), self.hidden, self.latent))

    def first_layer_weights(self):
        first = "hidden_0" if self.hidden else "mean"
        return np.asarray(self.params["encoder"][first]["kernel"])


@dataclasses.dataclass(frozen=True)
class VAE(EvalMethod):
    learning_rate: float = documented(1e-3, "Adam's step size")
    likelihood: str = documented(
        "auto", "auto (bernoulli for inputs in [0, 1], else gaussian) | bernoulli | gaussian")

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood: unknown '{self.likelihood}' (known: {', '.join(LIKELIHOODS)})")

    def describe(self):
        return (f"MLP VAE (Gaussian posterior, {self.likelihood} likelihood, Adam lr {self.learning_rate}) "
                "on the same unlabelled batches; features = posterior mean")

    def train(self, problem, steps):
        hidden, latent = tuple(problem.arch.widths[:-1]), problem.arch.widths[-1]
        pool = problem.pool
        likelihood = self.likelihood
        if likelihood == "auto":
            inside = float(problem.unlabelled.min()) >= 0.0 and float(problem.unlabelled.max()) <= 1.0
            likelihood = "bernoulli" if inside else "gaussian"
        encoder_key, decoder_key = jax.random.split(problem.init_key)
        dim = problem.unlabelled.shape[1]
        params = {"encoder": _Encoder(hidden, latent).init(encoder_key, jnp.zeros((1, dim)))["params"],
                  "decoder": _Decoder(hidden, dim).init(decoder_key, jnp.zeros((1, latent)))["params"],
                  "log_scale": jnp.zeros((dim,))}
        opt_state = optax.adam(self.learning_rate).init(params)
        done = 0
        for target in steps:
            params, opt_state = _train(params, opt_state, pool, problem.data_key, problem.method_key,
                                       done, target, hidden, latent, likelihood, self.learning_rate,
                                       problem.batch_size)
            done = target
            yield target, _VAEFeatures(params, hidden, latent)


@hookimpl
def metaplastic_eval_methods():
    return {"vae": VAE}
