import subprocess
import sys

import pytest

from conftest import make_distribution
from metaplastic.core import config as config_lib
from metaplastic.core.trainer import MetaTrainer
from metaplastic.registries import ComponentError, Registry, get_registry

EXTERNAL_OBJECTIVE = """
import dataclasses
import jax.numpy as jnp
from metaplastic.core.interfaces import MetaObjective
from metaplastic.registries import hookimpl

@dataclasses.dataclass(frozen=True)
class FeatureSpread(MetaObjective):
    '''Negative mean feature variance on batch B: a toy objective from outside the package.'''
    weight: float = 1.0

    def loss(self, features_fn, batch_a, batch_b):
        return -self.weight * jnp.mean(jnp.var(features_fn(batch_b.x), axis=0))

@hookimpl
def metaplastic_meta_objectives():
    return {"feature_spread": FeatureSpread}
"""


def test_builtins_are_registered_with_origin():
    registry = get_registry()
    for kind, name in [("base_model", "mlp_bn"), ("update_rule", "simple_local"),
                       ("meta_objective", "ridge_cosdist"), ("task_family", "image_classes"),
                       ("gradient_estimator", "truncated_backprop"), ("data_source", "sklearn_digits")]:
        entry = registry.entry(kind, name)
        assert entry.origin == "built-in"
        assert entry.module.startswith("metaplastic.plugins.")


def test_unknown_name_lists_registered_and_closest():
    with pytest.raises(ComponentError) as error:
        get_registry().get("meta_objective", "ridge_cosdst")
    message = str(error.value)
    assert "ridge_cosdist" in message and "did you mean 'ridge_cosdist'" in message
    assert "\n" not in message
    with pytest.raises(ComponentError, match="unknown component kind"):
        get_registry().get("optimiser", "adam")


def test_external_plugin_trains_by_name(tmp_path, monkeypatch, fresh_registry):
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_registry()
    entry = registry.entry("meta_objective", "feature_spread")
    assert entry.origin == "spread-objective"

    config = config_lib.load_config_file("experiments/train/quickstart.py:tiny")
    config = config_lib.resolve(config, [("meta_objective", "feature_spread"),
                                         ("meta_objective_config.weight", "2.0")])
    assert config.meta_objective_config.to_dict() == {"weight": 2.0}
    trainer = MetaTrainer(config, tmp_path / "run")
    summary = trainer.run(progress=False)
    assert summary["steps"] == config.num_steps and summary["skipped"] == 0
    assert type(trainer.components.objective).__name__ == "FeatureSpread"


def test_duplicate_name_names_both_origins(tmp_path, monkeypatch, fresh_registry):
    make_distribution(tmp_path, "shadowing-dist", "shadowing", """
from metaplastic.registries import hookimpl
@hookimpl
def metaplastic_meta_objectives():
    return {"ridge_cosdist": object}
""")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ComponentError) as error:
        fresh_registry()
    message = str(error.value)
    assert "duplicate meta_objective 'ridge_cosdist'" in message
    assert "built-in" in message and "shadowing-dist" in message


def test_broken_plugin_is_reported_and_skipped(tmp_path, monkeypatch, fresh_registry, capsys):
    make_distribution(tmp_path, "broken-dist", "broken_plugin", "raise RuntimeError('boom at import')\n")
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_registry()
    assert len(registry.skipped) == 1
    line = registry.skipped[0]
    assert "broken-dist" in line and "RuntimeError: boom at import" in line and "skipped" in line
    assert "broken-dist" in capsys.readouterr().err
    assert "feature_spread" in registry.names("meta_objective")  # the run goes on


def test_autoload_can_be_switched_off(tmp_path, monkeypatch):
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = Registry()
    assert "feature_spread" not in registry.names("meta_objective")
    assert "ridge_cosdist" in registry.names("meta_objective")
    monkeypatch.delenv("METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD")
    assert "feature_spread" in Registry().names("meta_objective")


def test_cli_lists_plugins_with_external_origin(tmp_path):
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    result = subprocess.run([sys.executable, "-m", "metaplastic", "plugins"], capture_output=True,
                            text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
                                            "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["kind", "name", "origin", "module"]
    spread = [line.split() for line in lines if "feature_spread" in line]
    assert spread == [["meta_objective", "feature_spread", "spread-objective", "spread_objective"]]
    assert any(line.split()[:3] == ["update_rule", "simple_local", "built-in"] for line in lines)
