"""`hebbian`: a hand-designed local unsupervised rule (Sanger's generalised Hebbian algorithm).

Every layer of an `mlp_bn` base model learns on its own input: with the layer
input x centred over the batch and the linear unit outputs y = x W,

    ΔW = η / (B · s) · (xᵀ y − W · triu(yᵀ y)),    s = mean_b ‖x_b‖²,

i.e. Hebbian growth plus Sanger's ordered decorrelation (unit j is decorrelated
from units k ≤ j). On a linear layer the columns of W converge to the leading
eigenvectors of the input covariance, in order. Dividing by s makes the step
scale-free (stable for η < 1 whatever the input scale). Columns are kept at unit
norm: the batch-normalised layer ignores their scale, and units beyond the
input's rank then stay put instead of decaying. Offsets b are not changed.

Nothing is learned: θ = {} and the constant η is a config field, so the rule
runs through exactly the same evaluation path as a learned rule.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metaplastic.core.interfaces import Architecture, BaseModel, InnerState, UpdateRule
from metaplastic.plugins.mlp_bn import MLPBatchNorm
from metaplastic.registries import hookimpl


def unit_columns(w: jax.Array) -> jax.Array:
    return w * jax.lax.rsqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True) + 1e-12)


def sanger_update(w: jax.Array, x: jax.Array) -> jax.Array:
    """The scale-free generalised Hebbian direction for weights w [n_in, n_out] and inputs x [B, n_in]."""
    centred = x - jnp.mean(x, axis=0, keepdims=True)
    y = centred @ w
    power = jnp.mean(jnp.sum(jnp.square(centred), axis=1)) + 1e-12
    return (centred.T @ y - w @ jnp.triu(y.T @ y)) / (x.shape[0] * power)


@dataclasses.dataclass(frozen=True)
class HebbianRule(UpdateRule):
    base_model: BaseModel = MLPBatchNorm()
    learning_rate: float = 0.05

    def __post_init__(self):
        if not isinstance(self.base_model, MLPBatchNorm):
            raise ValueError(f"update_rule 'hebbian' needs base_model 'mlp_bn', "
                             f"got {type(self.base_model).__name__}")
        if not 0.0 < self.learning_rate < 1.0:
            raise ValueError(f"update_rule_config.learning_rate: must be in (0, 1), got {self.learning_rate}")

    def init_theta(self, key):
        del key
        return {}

    def init_inner_state(self, key, arch: Architecture) -> InnerState:
        params = self.base_model.init(key, arch)
        layers = [{"w": unit_columns(layer["w"]), "b": layer["b"]} for layer in MLPBatchNorm.layers(params)]
        return InnerState(MLPBatchNorm.from_layers(layers), rule_state=None, step=jnp.zeros((), jnp.int32))

    def inner_step(self, theta, state: InnerState, x, key) -> InnerState:
        del theta, key  # fixed, deterministic rule
        activations = self.base_model.apply(state.params, x)
        inputs = [x] + [act.post for act in activations[:-1]]
        new_layers = []
        for layer, layer_input in zip(MLPBatchNorm.layers(state.params), inputs):
            w = unit_columns(layer["w"] + self.learning_rate * sanger_update(layer["w"], layer_input))
            new_layers.append({"w": w, "b": layer["b"]})
        return InnerState(MLPBatchNorm.from_layers(new_layers), state.rule_state, state.step + 1)


@hookimpl
def metaplastic_update_rules():
    return {"hebbian": HebbianRule}
