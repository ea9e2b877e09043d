"""Study configs: every shipped one resolves; bad settings, datasets and methods are one clear line."""

from __future__ import annotations

import pytest

from metaplastic.core import evaluation
from metaplastic.core.config import ConfigError

from helpers.evaluation import EXPERIMENTS, tiny_study


STUDIES = ["eval/datasets", "eval/time", "eval/imdb", "eval/architectures",
           "eval/architectures_large", "eval/filters"]


@pytest.mark.parametrize("name", STUDIES)
@pytest.mark.parametrize("variant", ["", ":quick"])
def test_every_study_config_resolves(name, variant):
    study = evaluation.load_study(str(EXPERIMENTS / f"{name}.py") + variant)
    assert study.methods and study.datasets and study.seeds >= 1
    for label in study.methods:
        evaluation.build_method(label, study.methods[label], study)


@pytest.mark.parametrize("override, message", [
    ("--config.methods.learned.rulez=x", "'config.methods.learned.rulez'; did you mean 'config.methods.learned.rule'"),
    ("--config.readouts=('ridge','knn')", "config.readouts: unknown"),
    ("--config.shots=(0,)", "config.shots"),
    ("--config.primary_method=nobody", "config.primary_method"),
    ("--config.stepz=3", "unknown config field 'config.stepz'"),
])
def test_bad_study_settings_are_one_clear_line(override, message):
    with pytest.raises(ConfigError, match=message):
        evaluation.load_study(str(EXPERIMENTS / "eval" / "datasets.py") + ":quick", [override])


def test_bad_datasets_and_methods_are_named(tmp_path):
    with pytest.raises(ConfigError, match="config.methods.x.method: unknown eval_method 'nope'"):
        tiny_study(methods=dict(x=dict(method="nope")))
    study = tiny_study(datasets=dict(gone=dict(dataset="no_such_data", required=True)))
    with pytest.raises(evaluation.EvaluationError, match="required dataset unavailable: datasets.gone"):
        evaluation.run_study(study, tmp_path, progress=False)
    study = tiny_study(shots=(500,))
    with pytest.raises(evaluation.EvaluationError, match="shots=500"):
        evaluation.run_study(study, tmp_path, progress=False)
    with pytest.raises(evaluation.EvaluationError, match="no config.json"):
        evaluation.expand_methods(tiny_study(rule_checkpoint=str(tmp_path)))
