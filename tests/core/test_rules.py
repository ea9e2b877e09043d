"""`LearnedRule` (`core.rules`): load, save, fit and features; population statistics; arguments
checked in one line; the recommended steps; rules from packages that are not installed."""

import dataclasses
import json
import re
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

import metaplastic
from metaplastic.core import config as config_lib
from metaplastic.core.errors import UserError
from metaplastic.core.interfaces import BaseModel, LayerActivation
from metaplastic.core.digest import pytree_digest
from metaplastic.core.rule_files import FORMAT_VERSION
from metaplastic.core.rules import DEFAULT_STEPS, LearnedRule, RuleError, load_rule, save_rule
from metaplastic.core.trainer import MetaTrainer
from metaplastic.registries import get_registry

from helpers.rules import load_error


def test_save_load_round_trip_from_workdir(tmp_path):
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"))
    trainer = MetaTrainer(config, tmp_path / "run")
    trainer.run(progress=False)
    from_workdir = load_rule(tmp_path / "run")
    save_rule(tmp_path / "saved", config.to_dict(), from_workdir.theta)
    from_folder = load_rule(tmp_path / "saved")
    for a, b, c in zip(jax.tree.leaves(trainer.theta), jax.tree.leaves(from_workdir.theta),
                       jax.tree.leaves(from_folder.theta), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    x = np.random.default_rng(0).uniform(size=(64, 8, 8))
    one = from_folder.fit(x, widths=(16, 8), steps=3, batch_size=16, seed=4).features(x)
    two = from_workdir.fit(x, widths=(16, 8), steps=3, batch_size=16, seed=4).features(x)
    np.testing.assert_array_equal(one, two)
    with pytest.raises(ValueError, match=re.escape("batch_size: expected an integer in [1, 4] (at most the number")):
        from_folder.fit(x[:4], widths=(16, 8), steps=1, batch_size=16)
    saved = json.loads((tmp_path / "saved" / "rule.json").read_text())
    assert saved["format_version"] == FORMAT_VERSION and saved["metaplastic_version"] == metaplastic.__version__
    assert saved["input_spec"] == {"pixels": "[0, 1]", "layout": "flattened"}
    assert saved["theta_sha256"] == pytree_digest(trainer.theta)

    from metaplastic.cli import main  # export writes with the same save_rule, and records recommended steps
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "exported"), "--recommended-steps", "30"]) == 0
    exported = load_rule(tmp_path / "exported")
    assert exported.recommended_steps == 30 and from_folder.recommended_steps == DEFAULT_STEPS
    assert exported.description["theta_sha256"] == saved["theta_sha256"]
    assert exported.description["update_rule_package"] == {"name": "metaplastic", "version": metaplastic.__version__}


class _Normalised(nn.Module):
    widths: tuple[int, ...]

    @nn.compact
    def __call__(self, x, statistics=None):
        outputs = []
        for i, units in enumerate(self.widths):
            z = nn.Dense(units, use_bias=False, kernel_init=nn.initializers.normal(0.1), name=f"layer_{i}")(x)
            if statistics is None:
                mean, var = z.mean(0), z.var(0)
                self.sow("intermediates", "statistics", {"mean": mean, "var": var})
            else:
                mean, var = statistics[i]["mean"], statistics[i]["var"]
            pre = (z - mean) * jax.lax.rsqrt(var + 1e-6) + self.param(f"b_{i}", nn.initializers.zeros, (units,))
            x = nn.relu(pre)
            outputs.append(LayerActivation(pre, x))
        return outputs


@dataclasses.dataclass(frozen=True)
class StatisticsMLP(BaseModel):
    """Dense → batch normalisation → offset → relu, with the optional statistics API."""

    with_statistics: bool = True

    def _net(self, params):
        return _Normalised(tuple(params[f"layer_{i}"]["kernel"].shape[1] for i in range(self._depth(params))))

    @staticmethod
    def _depth(params):
        return sum(key.startswith("layer_") for key in params)

    def init(self, key, arch):
        return _Normalised(arch.widths).init(key, jnp.zeros((2, arch.input_dim)))["params"]

    def apply(self, params, x, statistics=None):
        return self._net(params).apply({"params": params}, x, statistics)

    def statistics(self, params, x):
        if not self.with_statistics:
            return None
        _, state = self._net(params).apply({"params": params}, x, mutable=["intermediates"])
        return [state["intermediates"]["statistics"][i] for i in range(self._depth(params))] \
            if "statistics" in state["intermediates"] else None

    def layers(self, params):
        return [{"w": params[f"layer_{i}"]["kernel"], "b": params[f"b_{i}"]} for i in range(self._depth(params))]

    def from_layers(self, params, layers):
        out = {}
        for i, layer in enumerate(layers):
            out[f"layer_{i}"], out[f"b_{i}"] = {"kernel": layer["w"]}, layer["b"]
        return out


def simple_local_on(model: BaseModel) -> LearnedRule:
    shipped = load_rule("pretrained:glyphs-v2")
    return LearnedRule(dataclasses.replace(shipped.rule, base_model=model), shipped.theta, shipped.description)


DIGITS = (load_digits().data / 16.0).astype(np.float32)


def test_features_use_population_statistics_of_the_fitted_data():
    model = simple_local_on(StatisticsMLP()).fit(DIGITS[:600], widths=(24, 12), steps=5, batch_size=64)
    assert model.statistics is not None
    everything = model.features(DIGITS[:600])
    np.testing.assert_array_equal(model.features(DIGITS[:129])[128], everything[128])  # rows are independent
    single = np.stack([model.features(DIGITS[i:i + 1])[0] for i in (3, 7)])
    np.testing.assert_array_equal(single, everything[[3, 7]])
    assert np.abs(single[0] - single[1]).max() > 1e-3  # one example is not a constant vector
    # the statistics are those of the fitted data: the same as normalising over all 600 rows at once
    whole = model.rule.base_model.apply(model.state.params, jnp.asarray(DIGITS[:600]))[-1].post
    np.testing.assert_allclose(everything, np.asarray(whole), rtol=1e-4, atol=1e-5)
    unseen = model.features(DIGITS[600:700])  # other data: the fitted statistics, not its own
    assert not np.allclose(unseen, model.rule.base_model.apply(model.state.params, jnp.asarray(DIGITS[600:700]))[-1].post)
    # batch statistics stay available, and then the batch matters
    batch = model.features(DIGITS[:129], statistics="batch")
    assert not np.allclose(batch[128], model.features(DIGITS[:600], statistics="batch")[128])
    with pytest.raises(ValueError, match="statistics: expected 'population' or 'batch'"):
        model.features(DIGITS[:4], statistics="running")


def test_a_batch_normalised_model_without_statistics_falls_back_to_batch_statistics_with_a_warning():
    model = simple_local_on(StatisticsMLP(with_statistics=False)).fit(DIGITS[:300], widths=(8,), steps=2, batch_size=64)
    assert model.statistics is None and model.batch_dependent
    with pytest.warns(UserWarning, match="normalises with batch statistics"):
        features = model.features(DIGITS[:300])
    np.testing.assert_array_equal(features, model.features(DIGITS[:300], statistics="batch"))


def test_fit_reads_integer_pixels_as_training_does():
    rule = load_rule("pretrained:glyphs-v1")
    pixels = np.random.default_rng(0).integers(0, 256, size=(64, 8, 8), dtype=np.uint8)
    as_float = pixels.astype(np.float32) * np.float32(1 / 255)
    a = rule.fit(pixels, widths=(16, 8), steps=3, batch_size=16).features(pixels)
    b = rule.fit(as_float, widths=(16, 8), steps=3, batch_size=16).features(as_float)
    np.testing.assert_array_equal(a, b)


def _fit_error(rule, **kwargs) -> str:
    args = dict(x=np.random.default_rng(0).uniform(size=(32, 64)).astype(np.float32), widths=(8,), steps=1,
                batch_size=8) | kwargs
    with pytest.raises(ValueError) as excinfo:
        rule.fit(**args)
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_fit_arguments_are_checked_in_one_line():
    rule = load_rule("pretrained:glyphs-v2")
    nan = np.random.default_rng(0).uniform(size=(32, 64))
    nan[[1, 4, 9], 3] = [np.nan, np.inf, -np.inf]
    assert _fit_error(rule, x=nan) == "data: 3 non-finite values"
    assert _fit_error(rule, x=np.zeros((0, 64))).startswith("data: no examples")
    assert _fit_error(rule, x=np.arange(10)).startswith("data: expected an array [examples, ...]")
    assert _fit_error(rule, x=np.full((32, 4), 300)).startswith("data: integer values in [300, 300]")
    assert _fit_error(rule, steps=-1) == "steps: expected an integer ≥ 0, got -1"
    assert _fit_error(rule, steps=2.5) == "steps: expected an integer ≥ 0, got 2.5"
    assert _fit_error(rule, batch_size=0).startswith("batch_size: expected an integer in [1, 32]")
    assert _fit_error(rule, batch_size=33).startswith("batch_size: expected an integer in [1, 32]")
    assert _fit_error(rule, widths=()).startswith("widths: expected a non-empty sequence of integers ≥ 1")
    assert _fit_error(rule, widths=(8, 0)).startswith("widths: expected a non-empty sequence of integers ≥ 1")
    state = rule.init(100, (8,))
    assert _fit_error(rule, state=state) == ("data: expected 100 features per example (the input dimension of "
                                             "state), got 64")
    broken = LearnedRule(rule.rule, jax.tree.map(lambda a: a * np.nan, rule.theta), rule.description)
    assert _fit_error(broken).startswith("θ of rule 'simple_local': non-finite")


def test_fit_and_run_default_to_the_recommended_steps():
    shipped = load_rule("pretrained:glyphs-v2")
    assert shipped.recommended_steps == 100
    rule = dataclasses.replace(shipped, description=shipped.description | {"recommended_steps": 3})
    x = DIGITS[:64]
    default = rule.run(x, batch_size=16, widths=(16, 8))
    np.testing.assert_array_equal(jax.tree.leaves(default.params)[0],
                                  jax.tree.leaves(rule.run(x, steps=3, batch_size=16, widths=(16, 8)).params)[0])
    assert int(default.step) == 3
    unrecorded = LearnedRule(shipped.rule, shipped.theta, {})
    assert unrecorded.recommended_steps == DEFAULT_STEPS == 1000


def test_save_rule_writes_a_loaded_rule_with_new_theta_and_its_packages(tmp_path):
    shipped = metaplastic.load_rule("pretrained:glyphs-v2")
    halved = jax.tree.map(lambda leaf: leaf * 0.5, shipped.theta)
    folder = metaplastic.save_rule(tmp_path / "mine", shipped, halved, recommended_steps=50)
    loaded = metaplastic.load_rule(folder)
    for a, b in zip(jax.tree.leaves(loaded.theta), jax.tree.leaves(halved), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.recommended_steps == 50 and loaded.source == str(folder)
    saved = json.loads((folder / "rule.json").read_text())
    ours = {"name": "metaplastic", "version": metaplastic.__version__}
    assert saved["update_rule_package"] == ours and saved["base_model_package"] == ours
    assert saved["update_rule_config"] == shipped.description["update_rule_config"]
    again = metaplastic.save_rule(tmp_path / "again", loaded)  # θ and recommended steps carried over
    assert json.loads((again / "rule.json").read_text())["theta_sha256"] == saved["theta_sha256"]
    assert metaplastic.load_rule(again).recommended_steps == 50

    for theta, message in [({"lr_logit": shipped.theta["lr_logit"]}, "theta: entry ['unit_net']"),
                           (jax.tree.map(lambda leaf: leaf * np.nan, shipped.theta), "θ of rule 'simple_local': non-finite")]:
        with pytest.raises(RuleError) as excinfo:
            metaplastic.save_rule(tmp_path / "bad", shipped, theta)
        assert "\n" not in str(excinfo.value) and str(excinfo.value).startswith(message), str(excinfo.value)
    with pytest.raises(RuleError, match="recommended_steps: expected an integer ≥ 1"):
        metaplastic.save_rule(tmp_path / "bad", shipped, recommended_steps=0)
    assert not (tmp_path / "bad").exists()  # nothing written for a refused rule


DECAY_RULE = """
import dataclasses
import jax.numpy as jnp
from metaplastic.core.interfaces import BaseModel, InnerState, UpdateRule
from metaplastic.registries import hookimpl

@dataclasses.dataclass(frozen=True)
class Decay(UpdateRule):
    '''Shrinks every weight by a learned factor per step: a rule from outside the package.'''
    base_model: BaseModel
    rate: float = 0.5

    def init_theta(self, key):
        return {"rate": jnp.asarray(self.rate, jnp.float32)}

    def init_inner_state(self, key, arch):
        return InnerState(self.base_model.init(key, arch), (), jnp.zeros((), jnp.int32))

    def inner_step(self, theta, state, x, key):
        layers = [{"w": layer["w"] * theta["rate"], "b": layer["b"]} for layer in self.base_model.layers(state.params)]
        return state.replace(params=self.base_model.from_layers(state.params, layers), step=state.step + 1)

@hookimpl
def metaplastic_update_rules():
    return {"decay": Decay}
"""


def test_a_rule_from_a_package_that_is_not_installed_says_what_to_install(tmp_path, monkeypatch, fresh_registry):
    site = tmp_path / "site"  # an installed distribution `decay-rules`, laid out as pip installs one
    info = site / "decay_rules-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "decay_rules.py").write_text(DECAY_RULE)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: decay-rules\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[metaplastic]\ndecay = decay_rules\n")
    monkeypatch.syspath_prepend(str(site))
    rule = fresh_registry().get("update_rule", "decay")(base_model=get_registry().get("base_model", "mlp_bn")())
    config = {"update_rule": "decay", "update_rule_config": {"rate": 0.5}, "base_model": "mlp_bn",
              "base_model_config": {}}
    folder = save_rule(tmp_path / "decay_rule", config, rule.init_theta(None))
    saved = json.loads((folder / "rule.json").read_text())
    assert saved["update_rule_package"] == {"name": "decay-rules", "version": "0.1"}
    assert float(load_rule(folder).theta["rate"]) == 0.5  # loads where its package is installed

    rule_json = folder / "rule.json"
    rule_json.write_text(json.dumps(saved | {"update_rule": "decay_v2",
                                             "update_rule_package": {"name": "decay-rules", "version": "0.2"}}))
    assert load_error(folder) == (f"rule {folder} needs update rule 'decay_v2' from package 'decay-rules' "
                                   "(version 0.2; 0.1 is installed here and does not provide it): "
                                   "pip install 'decay-rules==0.2'")
    rule_json.write_text(json.dumps(saved))
    sys.path.remove(str(site))  # elsewhere: the package is not installed
    fresh_registry()
    assert load_error(folder) == (f"rule {folder} needs update rule 'decay' from package 'decay-rules' "
                                   "(version 0.1): pip install decay-rules")
    with pytest.raises(UserError):
        load_rule(folder)
    old = {k: v for k, v in saved.items() if k != "update_rule_package"}
    rule_json.write_text(json.dumps(old))  # a folder from before the record: the registry's error
    assert load_error(folder).startswith(f"{rule_json}: unknown update_rule 'decay'")


def test_the_recommended_rule_is_load_rules_default_and_the_release_studies_rule():
    from metaplastic.core.config import load_config_file
    from metaplastic.core.rules import RECOMMENDED_RULE, load_rule

    assert load_rule().description == load_rule(RECOMMENDED_RULE).description
    assert load_rule().description["update_rule"] == "metz2019"
    for study in ("datasets", "text", "architectures"):
        assert load_config_file(f"experiments/eval/{study}.py:release").rule_checkpoint == RECOMMENDED_RULE
