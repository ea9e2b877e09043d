"""`mlp_bn`: the paper's base model, an MLP with batch-statistics normalisation.

Each layer: bias-free linear W (truncated normal, std 0.01) -> normalise with the
current batch's mean and variance (eps 1e-6, no learned scale) -> add a learned
offset b (truncated normal, std 0.1) -> activation. Every layer, the top one
included, has the activation; the top post-activation is the representation u.

Parameters are `{"layer_0": {"w": [n_in, n_out], "b": [n_out]}, ...}` so update
rules read and write each layer's weights through `layers`/`from_layers` (the BaseModel interface).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Architecture, BaseModel, LayerActivation
from metaplastic.registries import hookimpl

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.1),
    "swish": jax.nn.swish,
    "tanh": jnp.tanh,
    "step": lambda z: (z > 0).astype(z.dtype),
}


def batch_normalise(z: jax.Array, eps: float = 1e-6, statistics: dict | None = None) -> jax.Array:
    """Normalise with the batch's mean and variance, or with fixed `statistics` {"mean", "var"}."""
    if statistics is None:
        mean = jnp.mean(z, axis=0, keepdims=True)
        var = jnp.mean(jnp.square(z - mean), axis=0, keepdims=True)
    else:
        mean, var = statistics["mean"], statistics["var"]
    return (z - mean) * jax.lax.rsqrt(var + eps)


class _BatchNormLayer(nn.Module):
    units: int
    activation: str
    weight_std: float
    bias_std: float

    @nn.compact
    def __call__(self, x, statistics=None):
        w = self.param("w", nn.initializers.truncated_normal(self.weight_std), (x.shape[-1], self.units))
        b = self.param("b", nn.initializers.truncated_normal(self.bias_std), (self.units,))
        z = x @ w
        if statistics is None and self.is_mutable_collection("intermediates"):
            mean = jnp.mean(z, axis=0)
            self.sow("intermediates", "statistics", {"mean": mean, "var": jnp.mean(jnp.square(z - mean), axis=0)})
        pre = batch_normalise(z, statistics=statistics) + b
        return LayerActivation(pre, ACTIVATIONS[self.activation](pre))


class _MLP(nn.Module):
    widths: tuple[int, ...]
    activation: str
    weight_std: float
    bias_std: float

    @nn.compact
    def __call__(self, x, statistics=None):
        outputs = []
        for i, units in enumerate(self.widths):
            out = _BatchNormLayer(units, self.activation, self.weight_std, self.bias_std, name=f"layer_{i}")(
                x, None if statistics is None else statistics[i])
            outputs.append(out)
            x = out.post
        return outputs


@dataclasses.dataclass(frozen=True)
class MLPBatchNorm(BaseModel):
    activation: str = documented(
        "relu", "nonlinearity after batch normalisation: relu | leaky_relu | swish | tanh | step")
    weight_std: float = documented(0.01, "initial weights: truncated normal with this standard deviation")
    bias_std: float = documented(0.1, "initial offsets: truncated normal with this standard deviation")

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"base_model_config.activation: unknown '{self.activation}' "
                             f"(known: {', '.join(ACTIVATIONS)})")

    def init_weight_std(self) -> float:
        return self.weight_std

    def _module(self, widths):
        return _MLP(tuple(widths), self.activation, self.weight_std, self.bias_std)

    def init(self, key, arch: Architecture):
        x = jnp.zeros((2, arch.input_dim), jnp.float32)
        return self._module(arch.widths).init(key, x)["params"]

    def _widths(self, params) -> tuple[int, ...]:
        return tuple(params[f"layer_{i}"]["b"].shape[0] for i in range(len(params)))

    def apply(self, params, x, statistics=None):
        return self._module(self._widths(params)).apply({"params": params}, x, statistics)

    def statistics(self, params, x):
        """Each layer's mean and variance of x @ W over the data x (population statistics)."""
        _, state = self._module(self._widths(params)).apply({"params": params}, x, mutable=["intermediates"])
        return [state["intermediates"][f"layer_{i}"]["statistics"][0] for i in range(len(params))]

    def layers(self, params) -> list[dict]:
        return [params[f"layer_{i}"] for i in range(len(params))]

    def from_layers(self, params, layers) -> dict:
        del params  # every parameter is a layer's w or b
        return {f"layer_{i}": dict(layer) for i, layer in enumerate(layers)}


@hookimpl
def metaplastic_base_models():
    return {"mlp_bn": MLPBatchNorm}
