"""The command line explains itself: help with the override syntax, `config`, `--version`, `export`."""

from __future__ import annotations

import contextlib
import io
import pathlib
import sys
import tomllib

import jax
import numpy as np
import pytest

import metaplastic
from metaplastic import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = "experiments/train/digits.py:tiny"


def run(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `metaplastic argv...` run in this process."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit:  # argparse: --help, --version
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


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


@pytest.mark.parametrize("command, where", [("train", "experiments/train/"), ("evaluate", "experiments/eval/")])
def test_help_explains_overrides_with_an_example(capsys, command, where):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert "--config.FIELD=VALUE or --config.FIELD VALUE" in out
    assert f"example:\n  metaplastic {command} --config experiments/" in out  # the epilog keeps its layout
    assert where in out and "metaplastic config FILE[:VARIANT]" in out


@pytest.mark.parametrize("command, folder, overrides, other", [
    ("evaluate", "eval", "--config.rule_checkpoint=DIR", "--config.optimizer"),
    ("train", "train", "--config.optimizer.learning_rate", "--config.rule_checkpoint")])
def test_help_lists_every_shipped_config_file_and_its_own_overrides(capsys, command, folder, overrides, other):
    """Every shipped file with a get_config (text.py too) and the first sentence of its docstring; a
    study's help suggests study fields, a training config's help training fields."""
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    shipped = [p for p in sorted((ROOT / "experiments" / folder).glob("*.py")) if "def get_config" in p.read_text()]
    assert shipped and (folder != "eval" or "text.py" in [p.name for p in shipped])
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()[0].endswith(".py")]
    assert listed == [p.name for p in shipped]
    assert "Evaluation on real text available offline" in out or folder == "train"
    assert overrides in out and other not in out


def test_top_level_help_lists_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("train", "evaluate", "config", "export", "plugins"):
        assert command in out


def test_version_names_the_package_jax_flax_and_the_backend(capsys):
    import importlib.metadata

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == (
        f"metaplastic {metaplastic.__version__} (jax {importlib.metadata.version('jax')}, flax "
        f"{importlib.metadata.version('flax')}, backend {jax.default_backend()}: {len(jax.devices())} device"
        f"{'s' if len(jax.devices()) != 1 else ''})")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == metaplastic.__version__


def test_config_prints_resolved_fields_defaults_and_docs(capsys):
    code, out, err = run(capsys, "config", TINY, "--config.num_steps", "3", "--config.remat=true")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"# {TINY} --config.num_steps 3 --config.remat=true: resolved training config")
    by_field = {line.split(" = ")[0]: line for line in lines if line.startswith("config.")}
    # a training field: value after the overrides, its doc from default.py, the default it differs from
    assert by_field["config.num_steps"].startswith("config.num_steps = 3 ")
    assert "# θ-steps (meta-gradient updates)  [default: 1000]" in by_field["config.num_steps"]
    assert by_field["config.remat"].startswith("config.remat = True ")
    assert by_field["config.seed"].endswith("# every random draw of the run derives from it")  # = default
    # every component's fields, with the dataclass field comments as docs
    assert "config.update_rule_config.hidden" in by_field and "config.base_model_config.activation" in by_field
    assert "# 0 = every allowed class" in by_field["config.task_family_config.classes_per_task"]
    assert "[default: ()]" in by_field["config.task_family_config.classes"]
    assert "# K choices (each compiles once)" in by_field["config.schedule.truncation_lengths"]
    assert "config.gradient_estimator_config" in by_field  # a component without fields still shows
    assert any(line.startswith("# optimizer: Adam on θ") for line in lines)  # a section's comment


def test_config_prints_the_files_docstring_and_its_variants(capsys, tmp_path):
    config_file = tmp_path / "mine.py"
    config_file.write_text('''"""My study of things.

More about them."""
import ml_collections
from metaplastic.core.config import apply_variant
from metaplastic.experiments.train import default


def small(config):
    """Fewer steps. Not this sentence."""
    config.num_steps = 3


def bare(config):
    config.num_steps = 4


def get_config(arg=None):
    return apply_variant(default.get_config(), arg, {"small": small, "bare": bare}, "mine.py")
''')
    code, out, err = run(capsys, "config", f"{config_file}:small")
    assert code == 0 and err == ""
    lines = out.splitlines()
    head = lines[1:lines.index(next(line for line in lines if line.startswith("config.")))]
    assert head == ["#", "# My study of things.", "#", "# More about them.", "#", "# variants (mine.py:NAME):",
                    "# * :small  Fewer steps.", "#   :bare", "#"]
    code, out, _ = run(capsys, "config", "experiments/train/default.py")
    assert code == 0 and "# variants: none (default.py takes no :NAME)" in out
    code, out, _ = run(capsys, "config", TINY)
    assert code == 0 and any(line.startswith("# * :tiny") for line in out.splitlines())


def test_every_shipped_variant_says_what_it_is():
    from metaplastic.core import config as config_lib

    for path in sorted((ROOT / "experiments").glob("*/*.py")):
        if "def get_config" in path.read_text():
            _, about = config_lib.read_config_file(str(path))
            assert about.doc, path
            assert all(about.variants.values()), (path, about.variants)  # each with its docstring


def test_config_of_another_component_shows_its_fields(capsys):
    code, out, _ = run(capsys, "config", TINY, "--config.update_rule=metz2019")
    assert code == 0
    assert "config.update_rule = 'metz2019'" in out and "[default: 'simple_local']" in out
    assert "config.update_rule_config.hidden" not in out and "config.update_rule_config.delta_dim" in out


def test_config_works_on_studies(capsys):
    code, out, _ = run(capsys, "config", "experiments/eval/datasets.py:quick", "--config.seeds=3")
    assert code == 0
    assert ": resolved study." in out.splitlines()[0]
    assert "config.seeds = 3" in out and "# repetitions: permutation" in out
    assert "config.datasets.digits_5_9.max_test = 100" in out and "[default: 2000]" in out
    assert "config.methods.learned.checkpoint_step = -1" in out and "config.methods.vae.likelihood" in out


def test_config_refuses_a_bad_override_in_one_line(capsys):
    code, out, err = run(capsys, "config", TINY, "--config.num_stepz=3")
    assert code == 2 and out == ""
    assert err == ("metaplastic: error: unknown config field 'config.num_stepz'; "
                   "did you mean 'config.num_steps'?\n")


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
