"""Nothing lost: one run per workdir, no resume with another config or rule, fine-tuning from a saved
rule, runs whose every step is skipped stop, plain progress lines for logs."""

from __future__ import annotations

import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.checkpoint import Checkpointer
from metaplastic.core.metrics import read_metrics
from metaplastic.core.trainer import MetaTrainer, TrainingError
from metaplastic.core.workdir import WorkdirError

from helpers.workdirs import leaves, tiny


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
