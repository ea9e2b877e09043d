"""`--help` explains itself: every command, the override syntax with an example, every shipped config file."""

from __future__ import annotations

import pytest

from helpers.cli import ROOT, run


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
