"""Task schedules and groups: independent phases (each task of a meta-batch has its own horizon and
position in it), and the architecture buckets the trainer uses."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from metaplastic.core import config as config_lib
from metaplastic.core.metrics import read_metrics
from metaplastic.core.tasks import ArchitectureSampler, Schedule
from metaplastic.core.trainer import MetaTrainer

from helpers.task_families import isolated


INDEPENDENT = {"schedule.phases": "independent", "schedule.horizon": "(2, 12)", "schedule.group_length": "40",
               "tasks_per_step": "4"}


def tiny_config(**overrides):
    pairs = {**INDEPENDENT, **overrides}
    return config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                              [(k, str(v)) for k, v in pairs.items()])


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_tasks_start_at_different_offsets_and_reset_one_by_one(tmp_path):
    trainer = MetaTrainer(tiny_config(num_steps=12), tmp_path)
    positions, resets = [], []
    for _ in range(12):
        row = trainer.train_step()
        positions.append(np.asarray(trainer.task_steps).copy())
        resets.append(row["task_resets"])
    positions = np.stack(positions)  # [steps, T]
    assert trainer.group_start == 0  # one group: its architecture bucket was kept throughout
    assert any(len(set(p)) > 1 for p in positions), "every task was at the same inner step at every θ-step"
    assert sum(resets) >= 2 and 0 < max(resets) < 4, "tasks ended all together or never"
    np.testing.assert_array_equal(np.asarray(trainer.estimator_state.step_in_horizon), positions[-1])
    assert np.all(positions[-1] < np.asarray(trainer.task_horizons))
    assert len({t.seed for t in trainer.group.tasks}) == 4  # replacements are new tasks
    rows = read_metrics(tmp_path) if (tmp_path / "metrics.csv").exists() else []
    assert rows == []  # train_step alone writes nothing


def test_lockstep_tasks_share_one_position(tmp_path):
    trainer = MetaTrainer(tiny_config(num_steps=3, **{"schedule.phases": "lockstep"}), tmp_path)
    trainer.train_step()
    assert np.ndim(trainer.estimator_state.step_in_horizon) == 0 and trainer.task_steps is None


def test_resume_mid_horizon_after_resets_is_bit_exact(tmp_path):
    config = tiny_config(num_steps=9, checkpoint_every=3)
    whole = MetaTrainer(config, tmp_path / "whole")
    whole.run(progress=False)
    MetaTrainer(tiny_config(num_steps=5, checkpoint_every=3), tmp_path / "split").run(progress=False)
    resumed = MetaTrainer(config, tmp_path / "split")
    assert resumed.step == 5 and any(start >= 0 for start in resumed.task_starts)  # resets to redraw
    resumed.run(progress=False)
    for a, b in zip(leaves(whole.theta), leaves(resumed.theta), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(whole.estimator_state), leaves(resumed.estimator_state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [t.seed for t in whole.group.tasks] == [t.seed for t in resumed.group.tasks]
    assert sum(r["task_resets"] for r in read_metrics(tmp_path / "whole")) > 0
    assert [r["meta_loss"] for r in read_metrics(tmp_path / "whole")] == \
        [r["meta_loss"] for r in read_metrics(tmp_path / "split")]


def test_pes_accumulators_reset_per_task(tmp_path):
    trainer = MetaTrainer(tiny_config(num_steps=8, gradient_estimator="pes",
                                      **{"gradient_estimator_config.num_pairs": "2"}), tmp_path)
    for _ in range(8):
        before = np.asarray(trainer.task_steps).copy()
        row = trainer.train_step()
        if 0 < row["task_resets"] < 4:
            break
    else:
        pytest.fail("no step reset some tasks but not all")
    reset = np.asarray(trainer.task_steps) == 0
    accumulator = [np.asarray(x) for x in jax.tree.leaves(trainer.estimator_state.extra.accumulator)]
    magnitude = np.stack([np.abs(a).reshape(a.shape[0], -1).max(axis=1) for a in accumulator]).max(axis=0)
    assert np.all(magnitude[reset] == 0) and np.all(magnitude[~reset] > 0), (before, magnitude)


def test_bad_phases_are_one_line_errors():
    with pytest.raises(ValueError, match="schedule.phases: 'sometimes' is not one of lockstep, independent"):
        Schedule(phases="sometimes")
    with pytest.raises(ValueError, match="schedule.group_length: must be >= 0"):
        Schedule(group_length=-1)


@pytest.mark.usefixtures("isolated")
def test_architecture_buckets():
    paper = ArchitectureSampler.paper()
    buckets = paper.buckets(256)
    assert len(buckets) == 16 == len(set(buckets))
    assert {len(a.widths) - 1 for a in buckets} == {2, 3, 4, 5}
    assert {a.widths[0] for a in buckets} == {64, 128, 256, 512}
    assert all(a.widths[-1] == 32 for a in buckets)
    ranged = ArchitectureSampler.from_ranges((1, 2), (64, 256), 3)
    assert ranged.depths == (1, 2) and ranged.widths == (64, 128, 256) and len(ranged.buckets(10)) == 6
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert [paper.sample(rng_a, 9) for _ in range(5)] == [paper.sample(rng_b, 9) for _ in range(5)]
    with pytest.raises(ValueError, match="architecture"):
        ArchitectureSampler.from_ranges((3, 2))
