"""Nothing lost: one run per workdir, no resume with another config, corrupt checkpoints survived,
snapshots that continue a run elsewhere, fine-tuning from a saved rule, runs that diverge stop."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.checkpoint import Checkpointer, CheckpointError
from metaplastic.core.metrics import read_metrics
from metaplastic.core.snapshot import export_snapshot, read_meta
from metaplastic.core.trainer import MetaTrainer, TrainingError
from metaplastic.core.workdir import WorkdirError


def tiny(**overrides):
    return config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                              [(k, str(v)) for k, v in overrides.items()])


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_a_second_trainer_on_one_workdir_is_refused_and_a_finished_one_frees_it(tmp_path):
    first = MetaTrainer(tiny(num_steps=2), tmp_path)
    with pytest.raises(WorkdirError, match=r"is in use by metaplastic train \(pid \d+\); one run per workdir"):
        MetaTrainer(tiny(num_steps=2), tmp_path)
    first.run(progress=False)
    MetaTrainer(tiny(num_steps=3), tmp_path).run(progress=False)  # the lock went with the first run
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 3


def test_resume_with_another_config_is_refused_in_one_line_unless_allowed(tmp_path):
    MetaTrainer(tiny(num_steps=2), tmp_path).run(progress=False)
    with pytest.raises(WorkdirError) as error:
        MetaTrainer(tiny(num_steps=4, seed=7, **{"optimizer.learning_rate": 0.1}), tmp_path)
    message = str(error.value)
    assert "\n" not in message and "seed: 0 -> 7" in message and "optimizer.learning_rate" in message
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0  # the record is untouched
    MetaTrainer(tiny(num_steps=4), tmp_path).run(progress=False)  # num_steps is not part of the run's identity
    MetaTrainer(tiny(num_steps=5, seed=7, allow_config_change=True), tmp_path).run(progress=False)
    history = sorted((tmp_path / "config_history").iterdir())
    assert [p.name for p in history] == ["config.before_step_4.json"]
    assert json.loads(history[0].read_text())["seed"] == 0
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 7


def damage(step_dir: pathlib.Path, how: str) -> None:
    if how == "delete":  # a partly deleted checkpoint: its whole state item is gone
        shutil.rmtree(step_dir / "state")
        return
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 64
                   and "meta" not in p.parts)
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    if how == "truncate":
        target.write_bytes(bytes(data[: len(data) // 3]))
    else:
        middle = len(data) // 2
        data[middle: middle + 8] = bytes(b ^ 0xFF for b in data[middle: middle + 8])
        target.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip", "delete"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, how, capsys):
    MetaTrainer(tiny(num_steps=4), tmp_path).run(progress=False)  # checkpoints at 2 and 4
    reference = MetaTrainer(tiny(num_steps=4), tmp_path / "clean")
    reference.run(progress=False)
    intact = Checkpointer(tmp_path / "checkpoints").all_steps()
    assert intact == [2, 4]
    damage(tmp_path / "checkpoints" / "4", how)
    resumed = MetaTrainer(tiny(num_steps=4), tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(lines) == 1 and "step 4" in lines[0] and "falling back to step 2" in lines[0]
    assert resumed.step == 2
    resumed.run(progress=False)  # and redoing steps 3-4 gives the uninterrupted run's θ
    for a, b in zip(leaves(resumed.theta), leaves(reference.theta), strict=True):
        np.testing.assert_array_equal(a, b)


def test_when_no_checkpoint_is_intact_one_line_says_so(tmp_path):
    MetaTrainer(tiny(num_steps=2, checkpoint_keep=1), tmp_path).run(progress=False)
    damage(tmp_path / "checkpoints" / "2", "truncate")
    with pytest.raises(CheckpointError, match="no checkpoint .* restores intact"):
        MetaTrainer(tiny(num_steps=2), tmp_path)


def test_a_snapshot_continues_the_run_on_a_clean_workdir(tmp_path):
    MetaTrainer(tiny(num_steps=4), tmp_path / "first").run(progress=False)
    path = tmp_path / "run.snapshot.npz"
    meta = export_snapshot(tmp_path / "first", path)
    assert meta["step"] == 4 and meta["config"]["update_rule"] == "simple_local"
    assert path.stat().st_size < 5_000_000
    trainer = MetaTrainer(tiny(num_steps=6, init_snapshot=str(path)), tmp_path / "elsewhere")
    source = Checkpointer(tmp_path / "first" / "checkpoints").restore_raw(4)
    assert trainer.step == 4
    for a, b in zip(leaves(trainer.theta), leaves(source["theta"]), strict=True):
        np.testing.assert_array_equal(a, b)
    trainer.run(progress=False)
    assert [row["step"] for row in read_metrics(tmp_path / "elsewhere")] == [5, 6]
    export_snapshot(tmp_path / "elsewhere", path)  # a new snapshot replaces the old file
    assert read_meta(path)["step"] == 6


def test_init_theta_fine_tunes_a_shipped_rule_and_refuses_another_rule(tmp_path):
    from metaplastic.core.rules import load_rule

    trainer = MetaTrainer(tiny(num_steps=1, init_theta="pretrained:glyphs-v2",
                               **{"update_rule_config.hidden": 16}), tmp_path / "fine")
    shipped = load_rule("pretrained:glyphs-v2").theta
    assert trainer.step == 0
    for a, b in zip(leaves(trainer.theta), leaves(shipped), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(config_lib.ConfigError, match="config.init_theta='pretrained:glyphs-v2': its rule is"):
        MetaTrainer(tiny(num_steps=1, init_theta="pretrained:glyphs-v2", update_rule="hebbian"), tmp_path / "x")


@dataclasses.dataclass(frozen=True)
class Exploding:
    """An estimator whose meta-gradient is always NaN."""

    inner: object
    unroll: object

    def init_state(self, *args):
        return self.inner.init_state(*args)

    def estimate(self, theta, state, data, key):
        grad, state, metrics = self.inner.estimate(theta, state, data, key)
        return jax.tree.map(lambda g: g * jnp.nan, grad), state, metrics


def test_a_run_whose_steps_are_all_skipped_stops_with_one_line(tmp_path):
    trainer = MetaTrainer(tiny(num_steps=10, max_consecutive_skipped=3), tmp_path)
    estimator = trainer.components.estimator
    trainer.components = dataclasses.replace(trainer.components, estimator=Exploding(estimator, estimator.unroll))
    with pytest.raises(TrainingError, match=r"the last 3 θ-steps were all skipped .*stopped at step 3"):
        trainer.run(progress=False)
    rows = read_metrics(tmp_path)
    assert [r["skip_reason"] for r in rows] == [2, 2, 2] and rows[-1]["skipped"] == 3


def test_resume_with_another_rule_is_refused_before_any_checkpoint_is_read(tmp_path):
    MetaTrainer(tiny(num_steps=2), tmp_path).run(progress=False)
    with pytest.raises(WorkdirError, match="update_rule: 'simple_local' -> 'hebbian'"):
        MetaTrainer(tiny(num_steps=4, update_rule="hebbian"), tmp_path)
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [2]
    assert not (tmp_path / "checkpoints_damaged").exists()  # nothing was taken for damaged


def test_progress_lines_for_logs_are_plain_and_timestamped(tmp_path, capsys):
    MetaTrainer(tiny(num_steps=3), tmp_path).run(progress="lines")
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    stamp = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] meta-train: "
    assert lines and all(re.match(stamp, line) for line in lines)
    steps = [line for line in lines if re.match(stamp + r"step \d+/3 ", line)]
    assert steps and "meta_loss" in steps[-1] and "\r" not in out.out + out.err
    assert lines[-1].split("] ")[1].startswith("meta-train: step 3/3")
