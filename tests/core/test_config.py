import subprocess
import sys

import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.config import ConfigError


def tiny_config(*overrides):
    base = config_lib.load_config_file("experiments/train/digits.py:tiny")
    return config_lib.resolve(base, config_lib.parse_overrides(list(overrides)))


def test_overrides_are_typed_and_defaults_filled():
    config = tiny_config("--config.num_steps=7", "--config.optimizer.learning_rate=1",
                        "--config.schedule.truncation_lengths=(3,5)", "--config.schedule.horizon=(5,10)",
                        "--config.remat=true")
    assert config.num_steps == 7 and isinstance(config.optimizer.learning_rate, float)
    assert tuple(config.schedule.truncation_lengths) == (3, 5) and config.remat is True
    # every field of the chosen component is present (filled from its dataclass defaults)
    assert set(config.update_rule_config.keys()) == {"hidden", "max_inner_lr"}
    assert config.base_model_config.activation == "relu"


@pytest.mark.parametrize("text, expected", [
    ("0,1", (0, 1)), ("(0, 1)", (0, 1)), ("3", (3,)), ('("vae", "hebbian")', ("vae", "hebbian")),
    ("vae,hebbian", ("vae", "hebbian")), ("(vae, hebbian)", ("vae", "hebbian")), ("vae", ("vae",)),
    ("digits_5_9, 2", ("digits_5_9", 2)),
])
def test_tuple_values_take_bare_words_as_numbers_do(text, expected):
    """`--config.only_methods=vae,hebbian` as `--config.only_seeds=0,1`: no Python quoting needed."""
    assert config_lib.parse_value("config.only_methods", text, ()) == expected


@pytest.mark.parametrize("override, message", [
    ("--config.num_stepz=3", "unknown config field 'config.num_stepz'; did you mean 'config.num_steps'?"),
    ("--config.optimizer.learning_rat=3", "did you mean 'config.optimizer.learning_rate'?"),
    ("--config.num_steps=many", "config.num_steps: expected int, got 'many'"),
    ("--config.remat=maybe", "config.remat: expected a bool, got 'maybe'"),
    ("--config.update_rule=simple_locl", "unknown update_rule 'simple_locl'"),
    ("--config.update_rule_config.hiden=3", "did you mean 'config.update_rule_config.hidden'?"),
    ("num_steps=3", "unrecognised argument 'num_steps=3'"),
])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as error:
        tiny_config(override)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_field_in_component_section_of_file():
    base = config_lib.load_config_file("experiments/train/digits.py:tiny")
    base.update_rule_config.hidden_units = 3
    with pytest.raises(ConfigError, match=r"config.update_rule_config.hidden_units: not a field of "
                                          r"update_rule 'simple_local'.*did you mean 'hidden'"):
        config_lib.resolve(base)


def test_switching_component_resets_its_section():
    config = tiny_config("--config.meta_objective=ridge_cosdist", "--config.base_model_config.activation=swish")
    assert config.base_model_config.activation == "swish"
    with pytest.raises(ConfigError, match="activation: unknown 'sigmoidal'"):
        config_lib.build(tiny_config("--config.base_model_config.activation=sigmoidal"), "base_model")


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file 'nowhere/x.py' not found"):
        config_lib.load_config_file("nowhere/x.py")


def test_cli_reports_config_error_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "metaplastic", "train", "--config",
                             "experiments/train/digits.py:tiny", "--workdir", str(tmp_path),
                             "--config.tasks_per_stepp=2"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == ("metaplastic: error: unknown config field 'config.tasks_per_stepp'; "
                                     "did you mean 'config.tasks_per_step'?")


def test_paper_config_falls_back_to_offline_data_and_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("METAPLASTIC_TFDS_DATA_DIR", str(tmp_path))  # nothing prepared there
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/paper.py"))
    assert capsys.readouterr().err == ""  # the config is data: nothing is loaded to make it
    assert config.update_rule == "metz2019" and tuple(config.architecture.depths) == (2, 3, 4, 5)
    family = config_lib.build(config, "task_family")
    err = capsys.readouterr().err
    assert "task_family 'mixture': skipping members[0]" in err and "members[1]" in err
    assert len(err.strip().splitlines()) == 1
    assert [dict(config)["datasets"] for _, config, _ in family.members] == [("glyphs",)]
    assert family.input_dim == 256 and family.target_dim == 10 + 4  # one-hot + augmentation targets


def test_space_form_overrides_are_the_same_as_equals():
    assert config_lib.parse_overrides(["--config.num_steps", "3", "--config.optimizer.learning_rate=1e-3",
                                       "--config.schedule.horizon", "(4, 8)"]) == [
        ("num_steps", "3"), ("optimizer.learning_rate", "1e-3"), ("schedule.horizon", "(4, 8)")]
    assert tiny_config("--config.num_steps", "-0").num_steps == 0


@pytest.mark.parametrize("args", [["--config.num_steps"], ["--config.num_steps", "--config.seed=1"]])
def test_override_without_value_is_one_line(args):
    with pytest.raises(ConfigError, match=r"^config.num_steps: no value given") as error:
        config_lib.parse_overrides(args)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("override, message", [
    ("--config.checkpoint_keep=0", "config.checkpoint_keep: must be >= 1, got 0"),
    ("--config.schedule.horizon=(4,2)", "config.schedule.horizon: need 1 <= low <= high, got (4, 2)"),
    ("--config.schedule.truncation_lengths=(0,)", "config.schedule.truncation_lengths: each value"),
    ("--config.optimizer.clip_norm=-1", "config.optimizer.clip_norm: must be > 0, got -1.0"),
    ("--config.schedule.phases=sideways", "config.schedule.phases: 'sideways' is not one of lockstep"),
])
def test_training_fields_are_validated_in_resolve(override, message):
    with pytest.raises(ConfigError) as error:
        tiny_config(override)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_config_file_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    (tmp_path / "raises.py").write_text("def get_config():\n    return {}['nope']\n")
    with pytest.raises(ConfigError, match=r"syntax.py' line 1: syntax error"):
        config_lib.load_config_file(str(tmp_path / "syntax.py"))
    with pytest.raises(ConfigError, match=r"raises.py' line 2: get_config raised KeyError: 'nope'"):
        config_lib.load_config_file(str(tmp_path / "raises.py"))
