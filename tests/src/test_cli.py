"""The command line: `--version`, what `train` prints into a pipe and draws into the workdir, the
progress bar only on a terminal, `export`, the licence."""

from __future__ import annotations

import contextlib
import io
import sys
import tomllib

import jax
import numpy as np
import pytest

import metaplastic
from metaplastic import cli

from helpers.cli import ROOT, TINY, run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(module fixtures cannot use capsys) A `metaplastic train` workdir of the tiny config, 2 θ-steps (checkpoints at 1 and 2), and the
    command's stdout and stderr."""
    workdir = tmp_path_factory.mktemp("cli") / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--config.num_steps", "2",
                         "--config.checkpoint_every=1"])
    return workdir, code, out.getvalue(), err.getvalue()


def test_version_names_the_package_jax_flax_and_the_backend(capsys):
    import importlib.metadata

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == (
        f"metaplastic {metaplastic.__version__} (jax {importlib.metadata.version('jax')}, flax "
        f"{importlib.metadata.version('flax')}, backend {jax.default_backend()}: {len(jax.devices())} device"
        f"{'s' if len(jax.devices()) != 1 else ''})")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == metaplastic.__version__


def test_train_prints_the_next_command_and_no_progress_frames_into_a_pipe(trained):
    workdir, code, out, err = trained
    assert code == 0
    # no validation, so no best/: the workdir itself, at the horizon it was trained for (digits.py:tiny: 4)
    assert out.splitlines()[-1] == (f"next: metaplastic evaluate --config experiments/eval/datasets.py:check "
                                    f"--workdir {workdir}_eval --config.rule_checkpoint={workdir} "
                                    f"--config.steps='(4,)'")
    assert "meta-train" not in err and "\r" not in err  # no tqdm frames when not on a terminal
    assert (workdir / "checkpoints").is_dir()


def test_train_draws_the_meta_training_curve_into_the_workdir(trained):
    from PIL import Image

    workdir = trained[0]
    width, height = Image.open(workdir / "meta_training_curve.png").size
    assert 400 <= width <= 1600 and height > 200


def test_progress_bar_only_on_a_terminal_and_lines_elsewhere(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    args = type("Args", (), {"no_progress": False})()
    monkeypatch.setattr(sys, "stderr", Stream(True))
    monkeypatch.setattr(sys, "stdout", Stream(True))
    assert cli._progress(args) == "bar"
    monkeypatch.setattr(sys, "stdout", Stream(False))
    assert cli._progress(args) == "lines"
    monkeypatch.setattr(sys, "stdout", Stream(True))
    args.no_progress = True
    assert cli._progress(args) == "off"


def test_export_writes_a_loadable_rule_folder(capsys, trained, tmp_path):
    workdir = trained[0]
    target = tmp_path / "exported"
    code, out, err = run(capsys, "export", str(workdir), str(target))
    assert code == 0 and err == "" and "exported step 2" in out
    assert sorted(p.name for p in target.iterdir()) == [
        "meta_training_config.json", "meta_training_curve.csv", "meta_training_curve.png", "rule.json", "theta.npz"]
    exported, original = metaplastic.load_rule(target), metaplastic.load_rule(workdir)
    assert exported.description["meta_training_steps"] == 2
    for a, b in zip(*(jax.tree.leaves(r.theta) for r in (exported, original))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    before = (target / "theta.npz").read_bytes()
    code, _, err = run(capsys, "export", str(workdir), str(target), "--step", "1")
    assert code == 2 and err == f"metaplastic: error: OUT_DIR '{target}': not empty (use --force to write into it)\n"
    assert (target / "theta.npz").read_bytes() == before

    code, out, _ = run(capsys, "export", str(workdir), str(target), "--step", "1", "--force")
    assert code == 0 and "exported step 1" in out
    assert metaplastic.load_rule(target).description["meta_training_steps"] == 1

    code, _, err = run(capsys, "export", str(workdir), str(tmp_path / "other"), "--step", "9")
    assert code == 2 and len(err.splitlines()) == 1 and "no step 9" in err and str(workdir) in err
    assert not (tmp_path / "other" / "rule.json").exists()


def test_license_is_apache_2():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "Copyright 2026 The metaplastic authors" in text
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
