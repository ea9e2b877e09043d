"""Renamed config fields: a stored config with an old name is read silently under the new one (a run
started before the rename resumes as the same run), a written one with one line naming the new name,
and the table is the only place the old spellings are written."""

from __future__ import annotations

import json
import re

import ml_collections
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.evaluation import resolve_study
from metaplastic.core.renamed_fields import RENAMED_FIELDS, current_config, current_overrides
from metaplastic.core.rules import load_rule
from metaplastic.core.trainer import MetaTrainer

from helpers import REPO_ROOT
from helpers.workdirs import tiny


def old_name(new: str) -> str:
    return next(old for _, _, old, current in RENAMED_FIELDS if current == new)


EPSILON, PREDICTIONS, UNLABELLED = (old_name(new) for new in
                                    ("normalise_epsilon", "normalise_predictions", "max_unlabelled"))


def test_stored_configs_are_read_under_the_current_names_without_a_word(capsys):
    stored = {"update_rule": "metz2019", "update_rule_config": {"hidden": 4, EPSILON: 0.5},
              "meta_objective": "ridge_cosdist", "meta_objective_config": {PREDICTIONS: False},
              "datasets": {"a": {"dataset": "digits", UNLABELLED: 10}, "b": {"dataset": "mnist"}}}
    current = current_config(stored)
    assert current == {"update_rule": "metz2019", "update_rule_config": {"hidden": 4, "normalise_epsilon": 0.5},
                       "meta_objective": "ridge_cosdist", "meta_objective_config": {"normalise_predictions": False},
                       "datasets": {"a": {"dataset": "digits", "max_unlabelled": 10}, "b": {"dataset": "mnist"}}}
    assert stored["update_rule_config"] == {"hidden": 4, EPSILON: 0.5}  # the caller's dict is left alone
    assert capsys.readouterr().err == ""
    unchanged = {"update_rule": "simple_local", "update_rule_config": {"hidden": 4}}
    assert current_config(unchanged) is unchanged


def test_a_field_is_renamed_only_for_the_component_it_belongs_to():
    # another rule may have a field of the old name: its section is its own
    other = {"update_rule": "someone_elses_rule", "update_rule_config": {EPSILON: 0.5}}
    assert current_config(other) == other
    assert current_overrides(other, [(f"update_rule_config.{EPSILON}", "0.5")]) == [
        (f"update_rule_config.{EPSILON}", "0.5")]


def test_both_names_in_one_section_is_one_line():
    both = {"update_rule": "metz2019", "update_rule_config": {EPSILON: 0.5, "normalise_epsilon": 1.0}}
    with pytest.raises(config_lib.ConfigError) as error:
        current_config(both, where="run/config.json: ")
    assert str(error.value) == (f"run/config.json: update_rule_config.{EPSILON}: the old name of normalise_epsilon, "
                                "which is also given; keep only normalise_epsilon")


def test_a_written_config_or_override_with_an_old_name_is_read_with_one_line_naming_the_new(capsys):
    written = config_lib.load_config_file("experiments/train/digits.py:tiny")
    written.meta_objective_config[PREDICTIONS] = False
    config = config_lib.resolve(written)
    assert config.meta_objective_config.normalise_predictions is False and PREDICTIONS not in config.meta_objective_config
    assert capsys.readouterr().err.splitlines() == [
        f"metaplastic: config.meta_objective_config.{PREDICTIONS} is now "
        "config.meta_objective_config.normalise_predictions; read as that"]

    overridden = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                                    config_lib.parse_overrides([f"--config.meta_objective_config.{PREDICTIONS}=False"]))
    assert overridden.meta_objective_config.normalise_predictions is False
    assert capsys.readouterr().err.splitlines() == [
        f"metaplastic: --config.meta_objective_config.{PREDICTIONS} is now "
        "--config.meta_objective_config.normalise_predictions; read as that"]

    # the component chosen on the command line decides whose field an override is
    metz = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"), config_lib.parse_overrides(
        ["--config.update_rule=metz2019", f"--config.update_rule_config.{EPSILON}=0.25"]))
    assert metz.update_rule_config.normalise_epsilon == 0.25
    assert "is now --config.update_rule_config.normalise_epsilon" in capsys.readouterr().err


def test_a_study_dataset_field_with_an_old_name_is_read_as_the_new(capsys):
    study = ml_collections.ConfigDict(dict(
        methods=dict(raw=dict(method="raw_input")), primary_method="raw",
        datasets=dict(digits=dict(dataset="digits", **{UNLABELLED: 100}))))
    resolved = resolve_study(study, [("datasets.more.dataset", "digits"), (f"datasets.more.{UNLABELLED}", "50")])
    assert resolved.datasets.digits.max_unlabelled == 100 and resolved.datasets.more.max_unlabelled == 50
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"metaplastic: config.datasets.digits.{UNLABELLED} is now config.datasets.digits.max_unlabelled; "
                     "read as that",
                     f"metaplastic: --config.datasets.more.{UNLABELLED} is now --config.datasets.more.max_unlabelled; "
                     "read as that"]


def test_a_run_started_before_the_rename_resumes_as_the_same_run(tmp_path, capsys):
    MetaTrainer(tiny(num_steps=2), tmp_path).run(progress=False)
    path = tmp_path / "config.json"
    stored = json.loads(path.read_text())
    section = stored["meta_objective_config"]
    section[PREDICTIONS] = section.pop("normalise_predictions")  # as a run started before wrote it
    path.write_text(json.dumps(stored, indent=2))

    assert load_rule(tmp_path).rule is not None  # its θ loads (config.json builds the rule)
    resumed = MetaTrainer(tiny(num_steps=3), tmp_path)  # no allow_config_change, not refused
    assert resumed.step == 2
    resumed.run(progress=False)
    assert resumed.step == 3 and not (tmp_path / "config_history").exists()
    rewritten = json.loads(path.read_text())["meta_objective_config"]
    assert "normalise_predictions" in rewritten and PREDICTIONS not in rewritten
    assert "is now" not in capsys.readouterr().err  # a stored config is read without a word


# where the project writes code, configs, stored files and documentation
SEARCHED = ("core", "plugins", "registries", "src", "experiments", "tests", "benchmarks", "scripts", "docs")
TABLE = REPO_ROOT / "core" / "renamed_fields.py"


def old_spellings_outside_the_table(root, table) -> list[str]:
    pattern = re.compile("|".join(re.escape(old) for _, _, old, _ in RENAMED_FIELDS))
    files = [root / "README.md"] + [p for folder in SEARCHED for p in sorted((root / folder).rglob("*"))
                                     if p.is_file() and p.suffix in (".py", ".json", ".md", ".sh", ".toml")]
    found = []
    for path in files:
        if path != table and "__pycache__" not in path.parts and path.exists():
            found += [f"{path.relative_to(root)}: {m.group()}" for m in pattern.finditer(path.read_text())]
    return found


def test_the_table_is_the_only_place_the_old_spellings_are_written():
    assert old_spellings_outside_the_table(REPO_ROOT, TABLE) == []


def test_the_spelling_check_can_fail(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "README.md").write_text("")
    (tmp_path / "core" / "x.py").write_text(f"spec.{UNLABELLED}\n")
    assert old_spellings_outside_the_table(tmp_path, tmp_path / "core" / "table.py") == [f"core/x.py: {UNLABELLED}"]
