"""`simple_local`: a small learned neuron-local rule (the walking-skeleton rule).

One MLP, shared by every unit of every layer, reads per-example, per-unit
quantities (standardised pre- and post-activation and the unit's batch mean
and spread of both) and emits two factors per example: c (the unit as the
pre-synaptic side of the layer above) and d (as the post-synaptic side of its
own incoming weights). ΔW_ij = Σ_b c_ib d_jb / B, normalised per column as
x/sqrt(1 + mean x²) so no step can be large. The offset moves as a moving
average toward tanh(mean_b of a third output), so it stays bounded and units
cannot be pushed into permanent silence. The inner step size is learned but
capped: lr = max_inner_lr·σ(θ_lr). Columns of W are renormalised to their RMS
at initialisation, since the batch-normalised layer ignores a column's scale.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Architecture, BaseModel, InnerState, UpdateRule
from metaplastic.registries import hookimpl

NUM_INPUTS = 6


class _UnitNet(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, inputs):  # [..., NUM_INPUTS] -> [..., 3]
        h = nn.tanh(nn.Dense(self.hidden)(inputs))
        h = nn.tanh(nn.Dense(self.hidden)(h))
        return nn.Dense(3, kernel_init=nn.initializers.normal(0.1))(h)


def _standardise(values, axis=0):
    mean = jnp.mean(values, axis=axis, keepdims=True)
    return (values - mean) * jax.lax.rsqrt(jnp.var(values, axis=axis, keepdims=True) + 1e-6)


def unit_inputs(pre, post):
    """Per-example, per-unit features [B, units, NUM_INPUTS] from batch activations."""
    b = pre.shape[0]
    stats = [jnp.broadcast_to(s, (b, s.shape[0])) for s in (jnp.mean(post, 0), jnp.std(post, 0))]
    return jnp.stack([_standardise(pre), _standardise(post), pre, post, *stats], axis=-1)


@dataclasses.dataclass(frozen=True)
class SimpleLocalRule(UpdateRule):
    base_model: BaseModel = documented(doc="supplied by the engine (config.base_model)")
    hidden: int = documented(16, "units of each hidden layer of the per-unit network shared by all units")
    max_inner_lr: float = documented(0.1, "cap on the learned inner step size: lr = max_inner_lr·σ(θ_lr)")

    def __post_init__(self):
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"update_rule_config.hidden: must be an integer >= 1, got {self.hidden!r}")

    def _net(self):
        return _UnitNet(self.hidden)

    def init_theta(self, key):
        net_key, _ = jax.random.split(key)
        return {"unit_net": self._net().init(net_key, jnp.zeros((1, NUM_INPUTS)))["params"],
                "lr_logit": jnp.asarray(-2.0, jnp.float32)}

    def init_inner_state(self, key, arch: Architecture) -> InnerState:
        params = self.base_model.init(key, arch)
        return InnerState(params=params, rule_state=None, step=jnp.zeros((), jnp.int32))

    def inner_step(self, theta, state: InnerState, x, key) -> InnerState:
        del key  # deterministic rule
        params = state.params
        activations = self.base_model.apply(params, x)
        layers = self.base_model.layers(params)
        net = lambda inputs: self._net().apply({"params": theta["unit_net"]}, inputs)
        lr = self.max_inner_lr * jax.nn.sigmoid(theta["lr_logit"])
        below_out = net(unit_inputs(x, x))  # input units: pre = post = pixel
        new_layers = []
        for layer, act in zip(layers, activations):
            out = net(unit_inputs(act.pre, act.post))            # [B, units, 3]
            c, d = below_out[..., 0], out[..., 1]                # pre- and post-synaptic factors
            delta_w = c.T @ d / x.shape[0]
            w = layer["w"]
            rms = jnp.sqrt(jnp.mean(jnp.square(w), axis=0, keepdims=True) + 1e-12)
            delta_w = delta_w * jax.lax.rsqrt(1.0 + jnp.mean(jnp.square(delta_w), axis=0, keepdims=True))
            w = w + lr * delta_w * rms
            w = w * rms * jax.lax.rsqrt(jnp.mean(jnp.square(w), axis=0, keepdims=True) + 1e-12)
            b = (1.0 - lr) * layer["b"] + lr * jnp.tanh(jnp.mean(out[..., 2], axis=0))
            new_layers.append({"w": w, "b": b})
            below_out = out
        return InnerState(self.base_model.from_layers(params, new_layers), state.rule_state, state.step + 1)


@hookimpl
def metaplastic_update_rules():
    return {"simple_local": SimpleLocalRule}
