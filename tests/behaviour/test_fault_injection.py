"""Meta-training killed (SIGKILL: no chance to save) at random points, again and again, then
resumed with the same command, ends with the θ of an uninterrupted run, bit for bit; also when the
latest checkpoint is corrupted between kills.

Slow (minutes: every start imports JAX and compiles): run with `pytest -m slow tests/behaviour/test_fault_injection.py`.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers.workdirs import damage

from metaplastic.core.checkpoint import Checkpointer

from helpers import REPO_ROOT


pytestmark = pytest.mark.slow  # skipped unless asked for with -m slow (tests/conftest.py)

REPO = REPO_ROOT
NUM_STEPS = 12


def train_command(workdir: pathlib.Path) -> list[str]:
    return [sys.executable, "-m", "metaplastic.cli", "train", "--config", "experiments/train/digits.py:tiny",
            "--workdir", str(workdir), "--no-progress", f"--config.num_steps={NUM_STEPS}",
            "--config.checkpoint_every=2"]


def start(workdir: pathlib.Path, log: pathlib.Path) -> subprocess.Popen:
    # The XLA flags conftest.py set are inherited, so every run compiles alike.
    with log.open("ab") as out:
        return subprocess.Popen(train_command(workdir), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ))


def saved_steps(workdir: pathlib.Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def finished(process: subprocess.Popen, log: pathlib.Path) -> bool:
    """True when the run ended by itself (it must have succeeded), False while it runs."""
    code = process.poll()
    if code is None:
        return False
    assert code == 0, f"metaplastic train exited {code}:\n{log.read_text()[-3000:]}"
    return True


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def run_after_delay(workdir, log, delay: float) -> bool:
    """Start the run and SIGKILL it `delay` seconds later; True if it finished first."""
    process = start(workdir, log)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if finished(process, log):
            return True
        time.sleep(0.02)
    if finished(process, log):
        return True
    kill(process)
    return False


def run_until_next_checkpoint(workdir, log, rng: random.Random) -> bool:
    """Start the run and SIGKILL it shortly (0-0.8 s) after it saves a new step, mid-step or
    mid-save; True if it finished first."""
    before = max(saved_steps(workdir), default=0)
    process = start(workdir, log)
    deadline = time.monotonic() + 120
    while max(saved_steps(workdir), default=0) <= before:
        if finished(process, log):
            return True
        assert time.monotonic() < deadline, f"no new checkpoint in 120 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.8))
    if finished(process, log):
        return True
    kill(process)
    return False


def run_to_the_end(workdir, log) -> None:
    process = start(workdir, log)
    try:
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            kill(process)
    assert finished(process, log)


def damage_latest(workdir: pathlib.Path, how: str) -> int:
    """Truncate or byte-flip the latest saved step (as test_workdir's `damage` does); its step."""
    step = saved_steps(workdir)[-1]
    damage(workdir / "checkpoints" / str(step), how)
    return step


def final_theta(workdir: pathlib.Path):
    checkpointer = Checkpointer(workdir / "checkpoints")
    try:
        return jax.tree_util.tree_flatten_with_path(checkpointer.restore_raw(NUM_STEPS)["theta"])[0]
    finally:
        checkpointer.close()


def assert_bit_exact(workdir: pathlib.Path, reference: pathlib.Path) -> None:
    got, want = final_theta(workdir), final_theta(reference)
    assert [jax.tree_util.keystr(p) for p, _ in got] == [jax.tree_util.keystr(p) for p, _ in want]
    for (path, a), (_, b) in zip(got, want, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, jax.tree_util.keystr(path)
        assert a.tobytes() == b.tobytes(), f"θ{jax.tree_util.keystr(path)} differs from the uninterrupted run"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run_to_the_end(workdir, workdir.parent / "uninterrupted.log")
    assert saved_steps(workdir)[-1] == NUM_STEPS
    return workdir


@pytest.mark.parametrize("corrupt", [False, True], ids=["kills", "kills-and-corrupted-checkpoints"])
def test_random_sigkills_then_resume_end_bit_exact(tmp_path, reference, corrupt):
    rng = random.Random(20240607 + corrupt)
    workdir, log = tmp_path / "run", tmp_path / "train.log"
    plan = [("delay", rng.uniform(0.5, 6.0)) for _ in range(8)]  # mostly during start-up and the first steps
    plan += [("checkpoint", None)] * 3  # and later: soon after a save, mid-step or mid-save
    rng.shuffle(plan)
    kills, resumed_from_a_checkpoint, damaged = 0, 0, []
    for kind, delay in plan:
        resumed_from_a_checkpoint += bool(saved_steps(workdir))
        done = (run_after_delay(workdir, log, delay) if kind == "delay"
                else run_until_next_checkpoint(workdir, log, rng))
        if done:
            break
        kills += 1
        steps = saved_steps(workdir)
        # Corrupt the latest step when an older intact one is left to fall back to.
        if corrupt and len(steps) >= 2 and steps[-1] < NUM_STEPS and steps[-1] > max(damaged, default=0):
            damaged.append(damage_latest(workdir, "truncate" if len(damaged) % 2 == 0 else "flip"))
    run_to_the_end(workdir, log)
    print(f"{kills} SIGKILLs, {resumed_from_a_checkpoint} starts resumed a checkpoint, damaged steps {damaged}")
    assert kills >= 6 and resumed_from_a_checkpoint >= 3
    assert saved_steps(workdir)[-1] == NUM_STEPS
    if corrupt:
        assert damaged, "no checkpoint was corrupted"
        text = log.read_text()
        for step in damaged:
            assert f"checkpoint step {step} in " in text and "is damaged" in text
        assert (workdir / "checkpoints_damaged").is_dir()
    assert_bit_exact(workdir, reference)
