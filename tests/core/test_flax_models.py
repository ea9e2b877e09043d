"""`metaplastic.apply_rule`: a learned rule trains the Dense layers of the user's own flax.linen MLP."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import freeze
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import metaplastic
from metaplastic.core.flax_models import FlaxModuleAdapter
from metaplastic.core.interfaces import InnerState, UpdateRule
from metaplastic.core.rules import LearnedRule
from metaplastic.registries import get_registry

DIGITS = load_digits()
X = (DIGITS.data / 16.0).astype(np.float32)  # [1797, 64] in [0, 1]


class UserMLP(nn.Module):
    """What a user writes: Dense → LayerNorm → relu, Dense (bias) → relu, Dense → relu; names by Flax."""

    widths: tuple[int, ...] = (32, 24, 16)

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.LayerNorm()(nn.Dense(self.widths[0])(x)))
        x = nn.relu(nn.Dense(self.widths[1], use_bias=True)(x))
        return nn.relu(nn.Dense(self.widths[2])(x))


SMALL = {"metz2019": dict(top_delta_size=8, compute_h_size=8, delta_dim=4), "simple_local": dict(hidden=4)}


def learned_rule(name: str) -> LearnedRule:
    registry = get_registry()
    placeholder = registry.get("base_model", "mlp_bn")()
    rule = registry.get("update_rule", name)(base_model=placeholder, **SMALL.get(name, {}))
    return LearnedRule(rule, rule.init_theta(jax.random.PRNGKey(0)), {"update_rule": name})


def one_line_error(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", sorted(get_registry().names("update_rule")))
def test_every_rule_trains_a_user_mlp_and_keeps_its_tree(name):
    module = UserMLP()
    params = module.init(jax.random.PRNGKey(1), X[:2])["params"]
    new = metaplastic.apply_rule(learned_rule(name), module, params, X[:256], steps=3, batch_size=32)

    assert jax.tree.structure(new) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    for layer in ("Dense_0", "Dense_1", "Dense_2"):
        assert not np.allclose(new[layer]["kernel"], params[layer]["kernel"]), f"{name} left {layer} unchanged"
    for leaf in ("scale", "bias"):  # normalisation parameters are read, never written
        np.testing.assert_array_equal(new["LayerNorm_0"][leaf], params["LayerNorm_0"][leaf])
    features = module.apply({"params": new}, X[:100])
    assert features.shape == (100, 16) and np.isfinite(np.asarray(features)).all()


def test_full_variables_in_full_variables_out_and_other_collections_untouched():
    class WithBatchNorm(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.BatchNorm(use_running_average=False)(nn.Dense(16, use_bias=False)(x)))
            return nn.relu(nn.Dense(8)(x))

    module = WithBatchNorm()
    variables = freeze(module.init(jax.random.PRNGKey(0), X[:4]))
    new = metaplastic.apply_rule(learned_rule("simple_local"), module, variables, X[:128], steps=2, batch_size=32)
    assert type(new) is type(variables) and set(new) == {"params", "batch_stats"}
    assert jax.tree.structure(new) == jax.tree.structure(variables)
    assert "bias" not in new["params"]["Dense_0"]
    np.testing.assert_array_equal(new["batch_stats"]["BatchNorm_0"]["mean"], variables["batch_stats"]["BatchNorm_0"]["mean"])
    assert not np.allclose(new["params"]["Dense_0"]["kernel"], variables["params"]["Dense_0"]["kernel"])


def test_pretrained_rule_on_digits_in_five_lines():
    rule = metaplastic.load_rule("pretrained:glyphs-v2")
    module = UserMLP(widths=(64, 48, 32))
    params = module.init(jax.random.PRNGKey(0), X[:1])["params"]
    params = metaplastic.apply_rule(rule, module, params, X, steps=100, batch_size=128)
    features = np.asarray(module.apply({"params": params}, X))

    assert features.shape == (len(X), 32) and np.isfinite(features).all() and features.std(axis=0).max() > 0
    readout = LogisticRegression(max_iter=300).fit(features[:1000], DIGITS.target[:1000])
    assert readout.score(features[1000:], DIGITS.target[1000:]) > 0.5  # chance is 0.1


def test_pre_and_post_are_the_tensors_around_the_activation():
    class Nested(nn.Module):
        @nn.compact
        def __call__(self, x):
            z0 = nn.Dense(12, name="first")(x)
            n0 = nn.LayerNorm(name="norm")(z0)
            h0 = nn.tanh(n0)                            # norm → activation: pre = norm output
            z1 = nn.Dense(10, name="second")(h0)
            h1 = nn.LayerNorm(name="after")(nn.relu(z1))  # activation → norm: pre = Dense output
            return nn.relu(nn.Dense(6, name="top")(h1)), (z0, n0, h0, z1, h1)

    class Features(Nested):
        def __call__(self, x):
            return super().__call__(x)[0]

    module = Features()
    variables = module.init(jax.random.PRNGKey(0), X[:2])
    adapter = FlaxModuleAdapter.of(module, variables, X[:32])
    acts = adapter.apply(variables, jnp.asarray(X[:32]))
    out, (z0, n0, h0, z1, h1) = Nested().apply(variables, X[:32])
    for got, want in [(acts[0].pre, n0), (acts[0].post, h0), (acts[1].pre, z1), (acts[1].post, h1), (acts[2].post, out)]:
        np.testing.assert_allclose(got, want, rtol=1e-6)
    layers = adapter.layers(variables)
    assert [layer["w"].shape for layer in layers] == [(64, 12), (12, 10), (10, 6)]
    assert adapter.architecture_of(variables).widths == (12, 10, 6)
    moved = adapter.from_layers(variables, [{"w": layer["w"] + 1, "b": layer["b"] + 1} for layer in layers])
    assert jax.tree.structure(moved) == jax.tree.structure(variables)
    for name in ("norm", "after"):  # what the rule reads but never writes
        for a, b in zip(jax.tree.leaves(moved["params"][name]), jax.tree.leaves(variables["params"][name])):
            np.testing.assert_array_equal(a, b)
    for name in ("first", "second", "top"):
        np.testing.assert_array_equal(moved["params"][name]["kernel"], variables["params"][name]["kernel"] + 1)
        np.testing.assert_array_equal(moved["params"][name]["bias"], variables["params"][name]["bias"] + 1)


def test_a_conv_model_is_refused_naming_the_conv():
    class ConvNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3))(x.reshape(-1, 8, 8, 1)))
            return nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))

    module = ConvNet()
    params = module.init(jax.random.PRNGKey(0), X[:2])["params"]
    with pytest.raises(ValueError) as excinfo:
        metaplastic.apply_rule(learned_rule("simple_local"), module, params, X[:64], steps=1, batch_size=8)
    assert one_line_error(excinfo) == "layer 'Conv_0' is a Conv; update rules drive Dense layers only"


class TwoDense(nn.Module):
    between: str = "nothing"

    @nn.compact
    def __call__(self, x):
        z = nn.Dense(16)(x)
        if self.between == "layernorm":
            z = nn.LayerNorm()(z)
        return nn.relu(nn.Dense(8)(z))


@pytest.mark.parametrize("between", ["nothing", "layernorm"])  # a normalisation is not an activation
def test_two_dense_without_an_activation_between_are_refused(between):
    module = TwoDense(between)
    params = module.init(jax.random.PRNGKey(0), X[:2])["params"]
    with pytest.raises(ValueError) as excinfo:
        metaplastic.apply_rule(learned_rule("simple_local"), module, params, X[:64], steps=1, batch_size=8)
    assert one_line_error(excinfo) == "layers Dense_0 → Dense_1 have no activation between them"


def test_other_models_a_rule_cannot_drive_are_refused_in_one_line():
    class Logits(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(16)(x))
            return nn.Dense(10)(x)

    class Preprocessed(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.relu(nn.Dense(8)(2.0 * x - 1.0))

    class Concatenated(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Dense(16)(x))
            return nn.relu(nn.Dense(8)(jnp.concatenate([h, x], axis=1)))

    class Shared(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(64)
            return nn.relu(dense(nn.relu(dense(x))))

    class NoDense(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.relu(x * self.param("gain", nn.initializers.ones, (64,)))

    cases = [(Logits(), "layer 'Dense_1' (the last Dense) has no activation after it"),
             (Preprocessed(), "layer 'Dense_0' (the first Dense) does not read the model's input"),
             (Concatenated(), "layer 'Dense_1' reads 80 features but 'Dense_0' has 16 units"),
             (Shared(), "layer 'Dense_0' is called 2 times (shared weights)"),
             (NoDense(), "module NoDense has no Dense layer")]
    for module, message in cases:
        params = module.init(jax.random.PRNGKey(0), X[:2])["params"]
        with pytest.raises(ValueError) as excinfo:
            metaplastic.apply_rule(learned_rule("simple_local"), module, params, X[:64], steps=1, batch_size=8)
        assert one_line_error(excinfo).startswith(message), type(module).__name__


def test_bad_arguments_are_one_line_errors():
    module = UserMLP()
    params = module.init(jax.random.PRNGKey(1), X[:2])["params"]
    rule = learned_rule("simple_local")
    bad = X[:64].copy()
    bad[0, :3] = np.nan
    for kwargs, message in [(dict(unlabelled_data=bad), "data: 3 non-finite values"),
                            (dict(steps=-1), "steps: expected an integer ≥ 0"),
                            (dict(batch_size=65), "batch_size: expected an integer in [1, 64]"),
                            (dict(params=[1, 2]), "params: expected the module's params"),
                            (dict(rule=3), "rule: expected a LearnedRule")]:
        args = dict(rule=rule, module=module, params=params, unlabelled_data=X[:64], steps=1, batch_size=8) | kwargs
        with pytest.raises(ValueError) as excinfo:
            metaplastic.apply_rule(**args)
        assert one_line_error(excinfo).startswith(message)


def test_user_weights_are_the_starting_point():
    """Zero steps return the given weights unchanged, bit for bit (nothing is re-initialised)."""
    module = UserMLP()
    params = module.init(jax.random.PRNGKey(1), X[:2])["params"]
    for name in ("hebbian", "metz2019"):
        same = metaplastic.apply_rule(learned_rule(name), module, params, X[:64], steps=0, batch_size=8)
        for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(a, b)
    rule = dataclasses.replace(learned_rule("metz2019").rule, base_model=FlaxModuleAdapter.of(
        module, {"params": params}, X[:8]))
    state = rule.init_inner_state(jax.random.PRNGKey(0), rule.base_model.architecture_of({"params": params}))
    assert [v.shape for v in state.rule_state["backward_w"]] == [(64, 32), (32, 24), (24, 16)]


class PlainRule(UpdateRule):
    """An update rule that is not a dataclass: apply_rule reaches it through `UpdateRule.with_base_model`."""

    def __init__(self, base_model, decay: float = 0.5):
        self.base_model, self.decay = base_model, decay

    def init_theta(self, key):
        return {"decay": jnp.asarray(self.decay, jnp.float32)}

    def init_inner_state(self, key, arch):
        return InnerState(self.base_model.init(key, arch), (), jnp.zeros((), jnp.int32))

    def inner_step(self, theta, state, x, key):
        layers = [{"w": layer["w"] * theta["decay"], "b": layer["b"]} for layer in self.base_model.layers(state.params)]
        return state.replace(params=self.base_model.from_layers(state.params, layers), step=state.step + 1)


def test_a_rule_that_is_not_a_dataclass_runs_on_a_user_mlp():
    module = UserMLP()
    params = module.init(jax.random.PRNGKey(1), X[:2])["params"]
    placeholder = get_registry().get("base_model", "mlp_bn")()
    rule = PlainRule(placeholder)
    new = metaplastic.apply_rule(LearnedRule(rule, rule.init_theta(None), {}), module, params, X[:64],
                                 steps=2, batch_size=8)
    assert rule.base_model is placeholder  # with_base_model copied the rule, the given one is unchanged
    for name in ("Dense_0", "Dense_1", "Dense_2"):
        np.testing.assert_allclose(new[name]["kernel"], params[name]["kernel"] * 0.25, rtol=1e-6)
        np.testing.assert_array_equal(new[name].get("bias"), params[name].get("bias"))
    np.testing.assert_array_equal(new["LayerNorm_0"]["scale"], params["LayerNorm_0"]["scale"])


def test_metz2019_draws_its_backward_weights_at_the_user_kernels_scale():
    module = UserMLP()
    params = module.init(jax.random.PRNGKey(1), X[:2])["params"]
    adapter = FlaxModuleAdapter.of(module, {"params": params}, X[:8])
    rms = np.mean([np.sqrt(np.mean(np.square(params[f"Dense_{i}"]["kernel"]))) for i in range(3)])
    assert adapter.init_weight_std() == pytest.approx(rms)
    rule = learned_rule("metz2019").rule
    arch = adapter.architecture_of({"params": params})
    on_user = rule.with_base_model(adapter).init_inner_state(jax.random.PRNGKey(0), arch)
    on_placeholder = rule.init_inner_state(jax.random.PRNGKey(0), arch)  # mlp_bn: weight_std 0.01
    for v, w in zip(on_user.rule_state["backward_w"], on_placeholder.rule_state["backward_w"], strict=True):
        np.testing.assert_allclose(v, w * (rms / 0.01), rtol=1e-5)


def test_steps_default_to_the_rules_recommended_steps():
    module = UserMLP()
    params = module.init(jax.random.PRNGKey(1), X[:2])["params"]
    rule = learned_rule("simple_local")
    recommended = dataclasses.replace(rule, description=rule.description | {"recommended_steps": 2})
    default = metaplastic.apply_rule(recommended, module, params, X[:64], batch_size=8)
    for steps, same in ((2, True), (1, False)):
        given = metaplastic.apply_rule(rule, module, params, X[:64], steps=steps, batch_size=8)
        assert np.array_equal(default["Dense_0"]["kernel"], given["Dense_0"]["kernel"]) is same, steps
