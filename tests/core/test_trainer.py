import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.checkpoint import Checkpointer
from metaplastic.core import trainer as trainer_module
from metaplastic.core.keys import KeyPurpose, run_key
from metaplastic.core.metrics import read_metrics
from metaplastic.core.trainer import MetaTrainer, estimate_step


def tiny_config(**overrides):
    base = config_lib.load_config_file("experiments/train/digits.py:tiny")
    return config_lib.resolve(base, [(k, str(v)) for k, v in overrides.items()])


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_resume_is_bit_exact(tmp_path):
    config = tiny_config(num_steps=7, checkpoint_every=3)
    whole = MetaTrainer(config, tmp_path / "whole")
    whole.run(progress=False)

    interrupted = tiny_config(num_steps=4, checkpoint_every=3)  # stops mid-horizon, saves at exit
    MetaTrainer(interrupted, tmp_path / "split").run(progress=False)
    resumed = MetaTrainer(config, tmp_path / "split")
    assert resumed.step == 4
    resumed.run(progress=False)

    for a, b in zip(leaves(whole.theta), leaves(resumed.theta), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(whole.estimator_state), leaves(resumed.estimator_state), strict=True):
        np.testing.assert_array_equal(a, b)
    whole_rows = read_metrics(tmp_path / "whole")
    split_rows = read_metrics(tmp_path / "split")
    assert [r["step"] for r in split_rows] == list(range(1, 8))
    assert [r["meta_loss"] for r in whole_rows] == [r["meta_loss"] for r in split_rows]
    # and a different seed really gives different numbers
    other = MetaTrainer(tiny_config(num_steps=2, seed=1), tmp_path / "other")
    other.run(progress=False)
    assert read_metrics(tmp_path / "other")[0]["meta_loss"] != whole_rows[0]["meta_loss"]


def test_workdir_has_config_metrics_and_events(tmp_path):
    config = tiny_config(num_steps=3)
    MetaTrainer(config, tmp_path).run(progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["update_rule"] == "simple_local" and saved["num_steps"] == 3
    rows = read_metrics(tmp_path)
    assert len(rows) == 3 and all(np.isfinite(r["meta_loss"]) for r in rows)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 3


@dataclasses.dataclass(frozen=True)
class PoisonedEstimator:
    """Wraps an estimator and makes its meta-loss and gradient NaN at chosen θ-steps (0-based), which
    it tells by their unroll keys: `estimate` stays a pure function, as the trainer compiles it."""

    inner: object
    seed: int
    poison_steps: tuple

    def init_state(self, *args):
        return self.inner.init_state(*args)

    def estimate(self, theta, state, data, key):
        grad, state, metrics = self.inner.estimate(theta, state, data, key)
        poisoned = jnp.any(jnp.stack([jnp.all(key == run_key(self.seed, KeyPurpose.UNROLL, step))
                                      for step in self.poison_steps]))
        nan_or_one = jnp.where(poisoned, jnp.nan, 1.0)
        grad = jax.tree.map(lambda g: g * nan_or_one, grad)
        return grad, state, dict(metrics, meta_loss=metrics["meta_loss"] * nan_or_one)


def test_non_finite_meta_gradient_is_skipped_and_counted(tmp_path):
    trainer = MetaTrainer(tiny_config(num_steps=4), tmp_path)
    trainer.components = dataclasses.replace(
        trainer.components, estimator=PoisonedEstimator(trainer.components.estimator, trainer.config.seed, (1,)))
    trainer.train_step()
    theta_before, group_before = leaves(trainer.theta), trainer.group
    metrics = trainer.train_step()
    assert metrics["skipped"] == 1 and trainer.skipped == 1
    for a, b in zip(theta_before, leaves(trainer.theta)):
        np.testing.assert_array_equal(a, b)  # θ untouched
    assert all(np.isfinite(x).all() for x in leaves(trainer.opt_state))
    assert trainer.group is None  # the tasks that blew up are abandoned
    trainer.train_step()
    assert trainer.group is not None and trainer.group is not group_before
    assert any(not np.array_equal(a, b) for a, b in zip(theta_before, leaves(trainer.theta)))


class LoweringsCounted:
    """A jitted function whose ahead-of-time lowerings are counted."""

    def __init__(self, jitted):
        self.jitted, self.count = jitted, 0

    def lower(self, **arguments):
        self.count += 1
        return self.jitted.lower(**arguments)


def test_the_first_step_is_compiled_up_front_from_its_own_data(tmp_path, monkeypatch):
    """`run` compiles the first θ-step before it writes anything (`compile_next_step`), from that step's
    data, which the step then uses: the data built once, the step compiled once, and the numbers of
    the estimator called directly, bit for bit. (NRES, whose `estimate` is one jitted call and integer
    bookkeeping; truncated_backprop's adds a mean of the unroll's losses, which, compiled
    with them, can move the meta-loss in the last bit under the suite's XLA flags.)"""
    lowerings = LoweringsCounted(estimate_step)
    monkeypatch.setattr(trainer_module, "estimate_step", lowerings)
    built = []
    build_data = MetaTrainer._build_data
    monkeypatch.setattr(MetaTrainer, "_build_data",
                        lambda self, group, step: built.append(step) or build_data(self, group, step))
    config = tiny_config(num_steps=3, gradient_estimator="nres", **{"gradient_estimator_config.num_pairs": 2})
    checked = MetaTrainer(config, tmp_path / "checked")
    checked.run(progress=False)
    assert lowerings.count == 1  # one signature: the first step's compile is every step's
    assert built.count(0) == 1

    direct = MetaTrainer(config, tmp_path / "direct")
    direct._estimate = lambda estimator, theta, state, data, key: estimator.estimate(theta, state, data, key)
    direct.compile_next_step = lambda: None
    direct.run(progress=False)
    numbers = lambda workdir: [{k: v for k, v in row.items() if k != "seconds"} for row in read_metrics(workdir)]
    assert numbers(tmp_path / "checked") == numbers(tmp_path / "direct")
    for a, b in zip(leaves(checked.theta), leaves(direct.theta), strict=True):
        np.testing.assert_array_equal(a, b)


KILL_DURING_SECOND_SAVE = """
import os, signal
from orbax.checkpoint._src.path import atomicity
from metaplastic.core import checkpoint, config as config_lib
from metaplastic.core.trainer import MetaTrainer

original_save = checkpoint.Checkpointer.save
original_finalize = atomicity.AtomicRenameTemporaryPath.finalize
saving_step = []

def recording_save(self, step, state, meta):
    saving_step.append(step)
    return original_save(self, step, state, meta)

async def finalize_then_die(self, *args, **kwargs):
    if saving_step[-1] == 4:  # files of the second checkpoint are written, not yet renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return await original_finalize(self, *args, **kwargs)

checkpoint.Checkpointer.save = recording_save
atomicity.AtomicRenameTemporaryPath.finalize = finalize_then_die
config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                            [("num_steps", "6"), ("checkpoint_every", "2")])
MetaTrainer(config, {workdir!r}).run(progress=False)
"""


def test_sigkill_during_save_leaves_previous_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    script = textwrap.dedent(KILL_DURING_SECOND_SAVE).format(workdir=str(workdir))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert any(path.name.startswith("4") for path in (workdir / "checkpoints").iterdir())  # the torn save
    assert Checkpointer(workdir / "checkpoints").latest_step() == 2
    resumed = MetaTrainer(tiny_config(num_steps=6), workdir)
    assert resumed.step == 2
    resumed.run(progress=False)
    reference = MetaTrainer(tiny_config(num_steps=6), tmp_path / "reference")
    reference.run(progress=False)
    for a, b in zip(leaves(reference.theta), leaves(resumed.theta)):
        np.testing.assert_array_equal(a, b)


def test_meta_loss_goes_down_on_digits_data(tmp_path):
    """A short real run: the learned rule gets better at its meta-objective."""
    config = tiny_config(num_steps=60, batch_size=32, tasks_per_step=4, checkpoint_every=1000,
                         **{"architecture.widths": "(32,)", "architecture.top_width": 16,
                            "schedule.truncation_lengths": "(5,)", "schedule.horizon": "(5, 20)",
                            "optimizer.learning_rate": 0.01})
    MetaTrainer(config, tmp_path).run(progress=False)
    losses = np.array([r["meta_loss"] for r in read_metrics(tmp_path)])
    assert losses[-15:].mean() < losses[:15].mean() - 0.02, losses


def test_sigterm_stops_after_the_step_and_saves_it(tmp_path):
    workdir = tmp_path / "run"
    script = ("from metaplastic.core import config as c\n"
              "from metaplastic.core.trainer import MetaTrainer\n"
              "cfg = c.resolve(c.load_config_file('experiments/train/digits.py:tiny'), "
              "[('num_steps', '100000'), ('checkpoint_every', '100000')])\n"
              f"MetaTrainer(cfg, {str(workdir)!r}).run(progress=False)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.csv"
    deadline = time.time() + 300
    while (not metrics.exists() or len(metrics.read_text().splitlines()) < 4) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    last_logged = int(read_metrics(workdir)[-1]["step"])
    assert last_logged >= 3
    assert Checkpointer(workdir / "checkpoints").latest_step() == last_logged
