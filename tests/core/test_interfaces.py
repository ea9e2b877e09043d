"""Every update rule trains and is evaluated on a second base model, so the BaseModel interface is
proven, not assumed: a user-style Flax MLP with its own parameter names and no offsets."""

from __future__ import annotations

import dataclasses
import json
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.evaluation import load_study, run_study
from metaplastic.core.interfaces import Architecture, BaseModel, LayerActivation
from metaplastic.core.trainer import MetaTrainer
from metaplastic.registries import hookimpl
from metaplastic.registries import registry as registry_module


class _Net(nn.Module):
    widths: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        outputs = []
        for units in self.widths:
            z = nn.Dense(units, use_bias=False, kernel_init=nn.initializers.normal(0.05))(x)
            z = (z - z.mean(0)) / jnp.sqrt(z.var(0) + 1e-5)
            x = nn.relu(z)
            outputs.append(LayerActivation(z, x))
        return outputs


@dataclasses.dataclass(frozen=True)
class OffsetFreeMLP(BaseModel):
    """Dense (no bias) -> batch standardisation -> ReLU; parameters {"Dense_i": {"kernel"}}."""

    def init(self, key, arch: Architecture):
        return _Net(arch.widths).init(key, jnp.zeros((2, arch.input_dim)))["params"]

    def apply(self, params, x):
        widths = tuple(params[f"Dense_{i}"]["kernel"].shape[1] for i in range(len(params)))
        return _Net(widths).apply({"params": params}, x)

    def layers(self, params):
        kernels = [params[f"Dense_{i}"]["kernel"] for i in range(len(params))]
        return [{"w": k, "b": jnp.zeros(k.shape[1], k.dtype)} for k in kernels]

    def from_layers(self, params, layers):
        return {f"Dense_{i}": {"kernel": layer["w"]} for i, layer in enumerate(layers)}


@hookimpl
def metaplastic_base_models():
    return {"offset_free_mlp": OffsetFreeMLP}


@pytest.fixture(scope="module")
def with_second_model():
    old = registry_module._REGISTRY
    plugin = types.ModuleType("second_base_model")
    plugin.metaplastic_base_models = metaplastic_base_models
    registry_module._REGISTRY = registry_module.Registry(autoload=False, extra_plugins=(plugin,))
    yield
    registry_module._REGISTRY = old


RULES = {"simple_local": ["--config.update_rule_config.hidden=4"],
         "hebbian": [],
         "metz2019": ["--config.update_rule_config.top_delta_size=8", "--config.update_rule_config.compute_h_size=8",
                      "--config.update_rule_config.delta_dim=4"]}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_trains_and_evaluates_on_a_second_base_model(rule, with_second_model, tmp_path):
    overrides = ["--config.base_model=offset_free_mlp", f"--config.update_rule={rule}", "--config.num_steps=2",
                 *RULES[rule]]
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                                config_lib.parse_overrides(overrides))
    trainer = MetaTrainer(config, tmp_path / "train")
    arch = Architecture(64, (16, 8))
    state = trainer.components.rule.init_inner_state(jax.random.PRNGKey(0), arch)
    assert set(state.params) == {"Dense_0", "Dense_1"}
    x = jax.random.uniform(jax.random.PRNGKey(1), (16, 64))
    # jitted, as everywhere the rule runs (op by op, metz2019's step alone took ~15 s)
    stepped = jax.jit(trainer.components.rule.inner_step)(trainer.theta, state, x, jax.random.PRNGKey(2))
    assert jax.tree.structure(stepped.params) == jax.tree.structure(state.params)
    changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(stepped.params), jax.tree.leaves(state.params))]
    assert all(changed), f"{rule} left a layer of the second base model unchanged"
    summary = trainer.run(progress=False)
    assert summary["steps"] == 2 and summary["skipped"] == 0

    study = load_study("experiments/eval/time.py:quick", [
        "--config.base_model=offset_free_mlp", f"--config.rule_checkpoint={tmp_path / 'train'}",
        "--config.seeds=1", "--config.steps=(2,)"])
    results = run_study(study, tmp_path / "eval", progress=False)
    learned = [c for c in results["cells"] if c["method"] == "learned"]
    assert learned and all(c["finite"] for c in learned)
    assert json.loads((tmp_path / "train" / "config.json").read_text())["base_model"] == "offset_free_mlp"


@dataclasses.dataclass(frozen=True)
class WideInitMLP(OffsetFreeMLP):
    """No `weight_std` field: its initial scale is known only through `BaseModel.init_weight_std`."""

    def init_weight_std(self):
        return 0.5


def test_rules_read_the_initial_weight_scale_through_the_interface():
    from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm
    from metaplastic.plugins.update_rules.metz2019 import Metz2019Rule

    assert OffsetFreeMLP().init_weight_std() == 0.01  # the documented default
    assert MLPBatchNorm(weight_std=0.03).init_weight_std() == 0.03
    arch, key = Architecture(64, (16, 8)), jax.random.PRNGKey(0)
    small = dict(top_delta_size=8, compute_h_size=8, delta_dim=4)
    default = Metz2019Rule(OffsetFreeMLP(), **small).init_inner_state(key, arch).rule_state["backward_w"]
    wide = Metz2019Rule(WideInitMLP(), **small).init_inner_state(key, arch).rule_state["backward_w"]
    for v, w in zip(wide, default, strict=True):
        np.testing.assert_allclose(v, w * 50, rtol=1e-5)
    assert 0.4 < float(np.std(wide[0])) < 0.5  # 0.5 × the std of a normal truncated at ±2 (0.88)
