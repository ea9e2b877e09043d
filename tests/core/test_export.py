"""`core.export.export_rule` as a library function (no command line): the rule folder it writes, the
metrics it keeps, and the inputs it refuses before writing anything."""

from __future__ import annotations

import csv
import json
import pathlib

import jax
import numpy as np
import pytest

import metaplastic
from metaplastic.core import config as config_lib
from metaplastic.core.errors import UserError
from metaplastic.core.export import ExportError, export_rule, metrics_until
from metaplastic.core.genome import train
from metaplastic.core.metrics import read_metrics
from metaplastic.core.renamed_fields import RENAMED_FIELDS

from helpers import REPO_ROOT


ROOT = REPO_ROOT


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    """A workdir of the tiny config after 2 θ-steps, checkpoints at 1 and 2."""
    base = config_lib.load_config_file(str(ROOT / "experiments" / "train" / "digits.py") + ":tiny")
    config = config_lib.resolve(base, [("num_steps", "2"), ("checkpoint_every", "1")])
    path = tmp_path_factory.mktemp("export") / "run"
    train(config, path, progress="off")
    return path


def test_export_writes_the_latest_theta_and_the_metrics_up_to_it(workdir, tmp_path):
    done = export_rule(workdir, tmp_path / "rule")
    assert done["step"] == 2 and done["destination"] == tmp_path / "rule"
    rows = read_metrics(workdir)
    assert done["seconds"] == pytest.approx(sum(row["seconds"] for row in rows))
    exported, original = metaplastic.load_rule(tmp_path / "rule"), metaplastic.load_rule(workdir)
    assert exported.description["meta_training_steps"] == 2
    for a, b in zip(jax.tree.leaves(exported.theta), jax.tree.leaves(original.theta), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with (tmp_path / "rule" / "meta_training_curve.csv").open(newline="") as f:
        curve = list(csv.DictReader(f))
    assert [row["step"] for row in curve] == ["1", "2"]  # counts stay integers
    assert [float(row["meta_loss"]) for row in curve] == [row["meta_loss"] for row in rows]  # numbers unchanged
    assert json.loads((tmp_path / "rule" / "meta_training_config.json").read_text()) == \
        json.loads((workdir / "config.json").read_text())


def test_export_of_an_earlier_step_keeps_only_its_metrics(workdir, tmp_path):
    done = export_rule(workdir, tmp_path / "rule", step=1, recommended_steps=30)
    assert done["step"] == 1
    rule = metaplastic.load_rule(tmp_path / "rule")
    assert rule.description["meta_training_steps"] == 1 and rule.recommended_steps == 30
    rows, seconds = metrics_until(workdir, 1)
    assert [row["step"] for row in rows] == [1] and seconds == rows[0]["seconds"]
    assert metrics_until(tmp_path / "no_metrics_here", 5) == ([], None)


@pytest.mark.parametrize("case, fragment", [
    ("missing", "does not exist"),
    ("file", "not a directory"),
    ("non-empty destination", "not empty (use --force"),
    ("destination is a file", "exists and is not a directory"),
    ("best without validation", "no best-validated θ"),
    ("missing step", "no step 9"),
])
def test_export_refuses_in_one_line_and_writes_nothing(workdir, tmp_path, case, fragment):
    source, target, step = workdir, tmp_path / "out", None
    if case == "missing":
        source = tmp_path / "nowhere"
    elif case == "file":
        source = tmp_path / "a_file"
        source.write_text("x")
    elif case == "non-empty destination":
        target.mkdir()
        (target / "kept.txt").write_text("mine")
    elif case == "destination is a file":
        target.write_text("mine")
    elif case == "best without validation":
        step = "best"
    else:
        step = 9
    before = sorted(p.name for p in target.iterdir()) if target.is_dir() else None
    with pytest.raises(UserError) as error:
        export_rule(source, target, step=step)
    assert fragment in str(error.value) and "\n" not in str(error.value)
    if case != "missing step":
        assert isinstance(error.value, ExportError)
    after = sorted(p.name for p in target.iterdir()) if target.is_dir() else None
    assert after == before and not (target / "rule.json").exists()


def test_read_metrics_leaves_out_a_row_cut_short(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,meta_loss,seconds\n1,0.5,0.25\n2,0.4,0.25\n3,0.")
    assert [row["step"] for row in read_metrics(tmp_path)] == [1.0, 2.0]
    (tmp_path / "metrics.csv").write_text("step,meta_loss,seconds\n1,0.5,0.25\n2,0.4\n")
    assert [row["step"] for row in read_metrics(tmp_path)] == [1.0]


def test_export_writes_the_training_config_under_current_field_names(workdir, tmp_path):
    import shutil

    old = tmp_path / "run_before_a_rename"
    shutil.copytree(workdir, old)
    stored = json.loads((old / "config.json").read_text())
    assert stored["meta_objective_config"]["normalise_predictions"] is True
    old_name = next(old for _, _, old, new in RENAMED_FIELDS if new == "normalise_predictions")
    renamed = dict(stored, meta_objective_config={
        (old_name if k == "normalise_predictions" else k): v for k, v in stored["meta_objective_config"].items()})
    (old / "config.json").write_text(json.dumps(renamed, indent=2))
    export_rule(old, tmp_path / "rule")
    written = json.loads((tmp_path / "rule" / "meta_training_config.json").read_text())
    assert written == stored  # the old name read as the current one, nothing else changed
