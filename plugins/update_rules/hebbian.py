"""`hebbian`: hand-designed local unsupervised rules with decorrelation between units (nothing learned).

Each layer of a batch-normalised base model (`mlp_bn`) learns from its own input x (centred over
the batch) and its units' activity; columns of W are then rescaled to unit
norm (Oja's normalisation: the batch-normalised layer ignores a column's
scale, and the norm cannot grow without bound). Offsets b are not changed.
Two modes:

- `competitive` (default): soft competitive Hebbian learning. Units compete
  for each example through a softmax over the layer's pre-activations,
  r = softmax(z / temperature), and each unit moves toward the examples it
  wins: ΔW = η · x̄ᵀ r / (B √s). Competition decorrelates the units, which
  become templates of frequent input patterns (spherical soft k-means). The
  pre-activations are batch-normalised, so every unit wins a similar share of
  examples and none dies.
- `sanger`: Sanger's generalised Hebbian algorithm on the linear outputs
  y = x̄ W: ΔW = η (x̄ᵀ y − W · triu(yᵀ y)) / (B s), Hebbian growth plus ordered
  decorrelation (unit j is decorrelated from units k ≤ j). The columns converge
  to the leading eigenvectors of the input covariance, in order (principal
  components; batch normalisation then whitens them, which amplifies
  low-variance directions, so on images it is a weaker representation).

s = mean_b ‖x̄_b‖² makes both steps scale-free (the directions live in `core.ops.plasticity`,
which `metz2019`'s hand-designed prior shares). θ = {}; the constants are config
fields, so the rule runs through exactly the same evaluation path as a learned rule.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Architecture, BaseModel, InnerState, UpdateRule
from metaplastic.core.ops.plasticity import competitive_update, sanger_update, unit_columns
from metaplastic.registries import hookimpl

MODES = ("competitive", "sanger")


@dataclasses.dataclass(frozen=True)
class HebbianRule(UpdateRule):
    base_model: BaseModel = documented(doc="supplied by the engine (config.base_model)")
    mode: str = documented(
        "competitive",
        "competitive (soft competitive Hebbian learning) | sanger (Sanger's rule; module docstring)")
    learning_rate: float = documented(0.1, "η, the step toward each unit's Hebbian direction, in (0, 1)")
    temperature: float = documented(0.3, "competitive mode: softmax temperature over the batch-normalised units")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"update_rule_config.mode: unknown '{self.mode}' (known: {', '.join(MODES)})")
        if not 0.0 < self.learning_rate < 1.0:
            raise ValueError(f"update_rule_config.learning_rate: must be in (0, 1), got {self.learning_rate}")
        if not self.temperature > 0.0:
            raise ValueError(f"update_rule_config.temperature: must be > 0, got {self.temperature}")

    def init_theta(self, key):
        del key
        return {}

    def init_inner_state(self, key, arch: Architecture) -> InnerState:
        params = self.base_model.init(key, arch)
        layers = [{"w": unit_columns(layer["w"]), "b": layer["b"]} for layer in self.base_model.layers(params)]
        return InnerState(self.base_model.from_layers(params, layers), rule_state=None, step=jnp.zeros((), jnp.int32))

    def inner_step(self, theta, state: InnerState, x, key) -> InnerState:
        del theta, key  # fixed, deterministic rule
        activations = self.base_model.apply(state.params, x)
        inputs = [x] + [act.post for act in activations[:-1]]
        new_layers = []
        for layer, layer_input, act in zip(self.base_model.layers(state.params), inputs, activations):
            if self.mode == "sanger":
                delta = sanger_update(layer["w"], layer_input)
            else:
                delta = competitive_update(layer_input, act.pre, self.temperature)
            new_layers.append({"w": unit_columns(layer["w"] + self.learning_rate * delta), "b": layer["b"]})
        return InnerState(self.base_model.from_layers(state.params, new_layers), state.rule_state, state.step + 1)


@hookimpl
def metaplastic_update_rules():
    return {"hebbian": HebbianRule}
