"""Every user error ends in one line on stderr naming the culprit, exit status 2, no traceback, and
an existing workdir keeps everything it had.

One row per bad input: the arguments (with {workdir}: an existing run's workdir, {tmp}: a scratch
folder holding the bad files below) and the text the line must contain.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib

import pytest

from metaplastic import cli
from metaplastic.core import config as config_lib

TINY = "experiments/train/quickstart.py:tiny"


def train(*overrides, config=TINY, workdir="{workdir}"):
    return ["train", "--config", config, "--workdir", workdir, *overrides]


ROWS = {
    # config-time refusals (core.config.resolve), against an existing workdir
    "batch_size < 1": (train("--config.batch_size=0"), "config.batch_size: must be >= 1, got 0"),
    "num_steps < 0": (train("--config.num_steps", "-1"), "config.num_steps: must be >= 0, got -1"),
    "tasks_per_step < 1": (train("--config.tasks_per_step=0"), "config.tasks_per_step: must be >= 1"),
    "checkpoint_every < 1": (train("--config.checkpoint_every=0"), "config.checkpoint_every: must be >= 1"),
    "checkpoint_keep < 1": (train("--config.checkpoint_keep=0"), "config.checkpoint_keep: must be >= 1"),
    "log_every < 1": (train("--config.log_every=0"), "config.log_every: must be >= 1"),
    "learning_rate < 0": (train("--config.optimizer.learning_rate=-1e-3"),
                          "config.optimizer.learning_rate: must be >= 0"),
    "clip_norm <= 0": (train("--config.optimizer.clip_norm=0"), "config.optimizer.clip_norm: must be > 0"),
    "empty widths": (train("--config.architecture.widths=()"), "config.architecture.widths: need at least one"),
    "empty depths": (train("--config.architecture.depths=()"), "config.architecture.depths: need at least one"),
    "top_width < 1": (train("--config.architecture.top_width=0"), "config.architecture.top_width: must be >= 1"),
    "horizon low > high": (train("--config.schedule.horizon=(4,2)"),
                           "config.schedule.horizon: need 1 <= low <= high, got (4, 2)"),
    "truncation length 0": (train("--config.schedule.truncation_lengths=(2,0)"),
                            "config.schedule.truncation_lengths: each value must be an integer >= 1"),
    "component's own ValueError": (train("--config.base_model_config.activation=sigmoidal"),
                                   "config.base_model='mlp_bn': base_model_config.activation: unknown 'sigmoidal'"),
    "override without a value": (train("--config.num_steps"), "config.num_steps: no value given"),
    "unknown field": (train("--config.num_stepz=3"), "unknown config field 'config.num_stepz'"),
    # config files
    "unknown variant": (train(config="experiments/train/quickstart.py:nope"),
                        "experiments/train/quickstart.py: unknown variant 'nope' (known: tiny)"),
    "missing config file": (train(config="{tmp}/nowhere.py"), "config file '{tmp}/nowhere.py' not found"),
    "syntax error in config": (train(config="{tmp}/syntax.py"), "config file '{tmp}/syntax.py' line 4: syntax error"),
    "get_config raises": (train(config="{tmp}/raises.py"),
                          "config file '{tmp}/raises.py' line 6: get_config raised ZeroDivisionError"),
    # data
    "missing dataset": (train("--config.task_family_config.datasets=('no_such_dataset',)"),
                        "dataset 'no_such_dataset' split 'train' is unavailable"),
    "unreadable npz": (train("--config.task_family_config.datasets=('{tmp}/broken.npz',)"),
                       "dataset '{tmp}/broken.npz' split 'train': unreadable (ValueError: "),
    "npz that is a broken zip": (train("--config.task_family_config.datasets=('{tmp}/broken_zip.npz',)"),
                                 "dataset '{tmp}/broken_zip.npz' split 'train': unreadable (BadZipFile: "),
    # workdirs
    "workdir is a file": (train(workdir="{tmp}/a_file"), "--workdir '{tmp}/a_file': exists and is not a directory"),
    "workdir under a file": (train(workdir="{tmp}/a_file/run"),
                             "--workdir '{tmp}/a_file/run': cannot be created, '{tmp}/a_file' is not a directory"),
    "workdir parent not writable": (train(workdir="{tmp}/read_only/run"),
                                    "--workdir '{tmp}/read_only/run': cannot be created, '{tmp}/read_only' "
                                    "is not writable"),
    # evaluation
    "missing rule checkpoint": (["evaluate", "--config", "experiments/eval/datasets.py:quick", "--workdir",
                                 "{tmp}/eval", "--config.rule_checkpoint={tmp}/no_run"], "'{tmp}/no_run'"),
    # export
    "export of a folder that is no workdir": (["export", "{tmp}", "{tmp}/out"], "'{tmp}'"),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An existing run's workdir, as `metaplastic train` leaves it (the files' contents stand in: no row
    gets as far as reading them, and a real run would cost a compilation)."""
    path = tmp_path_factory.mktemp("bad_inputs") / "run"
    config = config_lib.resolve(config_lib.load_config_file(TINY))
    (path / "checkpoints" / "2" / "state").mkdir(parents=True)
    (path / "tensorboard").mkdir()
    (path / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    (path / "metrics.csv").write_text("step,meta_loss,seconds\n1,0.9,1.0\n2,0.8,1.0\n")
    (path / "checkpoints" / "2" / "state" / "manifest.ocdbt").write_bytes(bytes(range(256)))
    (path / "checkpoints" / "2" / "commit_success.txt").write_text("Checkpoint commit was successful\n")
    (path / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"\x00" * 64)
    return path


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    (tmp_path / "syntax.py").write_text("import ml_collections\n\n\ndef get_config(:\n    pass\n")
    (tmp_path / "raises.py").write_text("import ml_collections\n\n\ndef get_config(arg=None):\n"
                                        "    config = ml_collections.ConfigDict()\n    return 1 / 0\n")
    (tmp_path / "broken.npz").write_bytes(b"this is not an npz file" * 4)
    (tmp_path / "broken_zip.npz").write_bytes(b"PK\x03\x04" + b"a truncated zip" * 4)
    (tmp_path / "a_file").write_text("not a folder\n")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    real_access = os.access  # root may write anywhere: the check sees the folder as the permission bits say
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if pathlib.Path(path) == read_only
                        else real_access(path, mode, **kw))
    yield tmp_path
    read_only.chmod(0o755)


def contents(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file's bytes (the lock file, rewritten by each trainer, aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_is_one_line_exit_2(row, workdir, scratch, capsys):
    argv, culprit = ROWS[row]
    fill = dict(workdir=str(workdir), tmp=str(scratch))
    argv = [arg.format(**fill) for arg in argv]
    before = contents(workdir)
    code = cli.main(argv)
    # a trainer that failed in __init__ keeps the workdir lock until it is collected (in a process of
    # its own, `metaplastic train` exits and the kernel drops it)
    gc.collect()
    out, err = capsys.readouterr()
    assert code == 2, (row, out, err)
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith("metaplastic: error: ") and "Traceback" not in err
    assert culprit.format(**fill) in err, err
    assert contents(workdir) == before  # nothing in the existing workdir was lost or changed


def test_config_time_refusals_come_before_the_workdir_is_touched(tmp_path, capsys):
    target = tmp_path / "new_run"
    assert cli.main(train("--config.checkpoint_keep=0", workdir=str(target))) == 2
    assert not target.exists()
    assert "config.checkpoint_keep" in capsys.readouterr().err
