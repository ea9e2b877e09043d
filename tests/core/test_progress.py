"""What long commands say while they work (`core.progress`): done/total, rate and ETA on a fake clock;
`train` into a pipe (lines, resuming, already complete); SIGTERM and Ctrl-C said at once and at the end."""

from __future__ import annotations

import gc
import io
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from metaplastic import cli
from metaplastic.core import progress as progress_lib
from metaplastic.core.progress import Progress, StopSignals, duration, progress_mode

TINY = "experiments/train/digits.py:tiny"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def reporter(total=100, done=0, every=30.0, mode="lines"):
    clock, stream = Clock(), io.StringIO()
    return Progress("meta-train", total, done, mode=mode, every_seconds=every, stream=stream, clock=clock,
                    stamp=lambda: "T"), clock, stream


def test_rate_and_eta_leave_out_the_first_unit_which_compiles():
    progress, clock, _ = reporter(total=100, done=10)
    clock.now += 120.0  # compiling and the first step
    progress.update()
    assert progress.rate() is None and progress.eta() is None
    for _ in range(21):
        clock.now += 0.5
        progress.update()
    assert progress.done == 32
    assert progress.rate() == pytest.approx(2.0)  # 21 steps in 10.5 s; the 120 s first step left out
    assert progress.eta() == pytest.approx(68 / 2.0)
    assert progress.line("meta_loss 1.2") == ("meta-train: step 32/100 (32.0%), 2.00 steps/s, ETA 34s "
                                              "| meta_loss 1.2")
    clock.now += 100.0  # slower than a unit per second: seconds per unit
    progress.update(41)  # 30 steps in 110.5 s
    assert progress.line() == "meta-train: step 41/100 (41.0%), 3.7 s/step, ETA 3m37s"


def test_lines_come_after_the_first_unit_every_period_and_at_the_end():
    progress, clock, stream = reporter(total=50, every=30.0)
    progress.compiling_notice()
    assert progress.compiling
    clock.now += 60.0
    progress.update(note="meta_loss 1.0")  # the first unit: a line at once
    assert not progress.compiling
    for _ in range(48):  # 48 steps 1 s apart: a line each 30 s
        clock.now += 1.0
        progress.update()
    clock.now += 1.0
    progress.update()  # the last one
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[T] meta-train: compiling (the first step takes longest; later ones reuse it)…"
    assert lines[1] == "[T] meta-train: step 1/50 (2.0%), 1m00s so far (with compiling) | meta_loss 1.0"
    assert [re.search(r"step (\d+)/", line).group(1) for line in lines[1:]] == ["1", "31", "50"]
    assert "ETA 19s" in lines[2] and lines[3].endswith("1.00 steps/s, 1m49s in all")


def test_resuming_is_said_and_off_says_nothing():
    progress, _, stream = reporter(total=6, done=4)
    progress.resuming_notice()
    assert stream.getvalue() == "[T] meta-train: resuming from step 4 of 6\n"
    for done, total in ((0, 6), (6, 6)):  # a new run, a finished one: not resuming
        progress, _, stream = reporter(total=total, done=done)
        progress.resuming_notice()
        assert stream.getvalue() == ""
    progress, clock, stream = reporter(total=6, done=4, mode="off")
    progress.resuming_notice()
    progress.compiling_notice()
    progress.update()
    progress.update()
    assert stream.getvalue() == ""


def test_modes_and_durations():
    assert [progress_mode(p) for p in (True, False, None, "lines", "bar", "off")] == \
        ["bar", "off", "off", "lines", "bar", "off"]
    with pytest.raises(ValueError, match="progress: expected"):
        progress_mode("yes")
    assert [duration(s) for s in (0.4, 59, 61, 3600 * 2 + 24 * 60 + 5, 86400 * 3 + 4 * 3600)] == \
        ["0s", "59s", "1m01s", "2h24m", "3d04h"]


def test_the_first_stop_signal_is_said_at_once_and_the_handlers_come_back():
    progress, _, stream = reporter(total=20000, done=42)
    progress.compiling = True
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = StopSignals(progress, then="saving it", quit_note=lambda: "unused")
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
    finally:
        stop.restore()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert stream.getvalue() == ("metaplastic: SIGTERM: stopping after step 43 of 20000 (after compiling it, "
                                 "which cannot be cut short), then saving it\n")


def test_a_second_ctrl_c_quits_at_once_saying_what_resumes():
    script = textwrap.dedent("""
        import os, signal, sys, time
        from metaplastic.core.progress import Progress, StopSignals
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even under nohup
        progress = Progress("meta-train", 10, 3, stream=sys.stdout)
        stop = StopSignals(progress, then="saving it", quit_note=lambda: "the same command resumes from step 2")
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.signal == "Ctrl-C"
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("not reached")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stdout.splitlines() == [
        "metaplastic: Ctrl-C: stopping after step 4 of 10, then saving it; Ctrl-C again quits at once",
        "metaplastic: Ctrl-C again: quitting at once at step 3 of 10; the same command resumes from step 2"]


# ---------------------------------------------------------------- the command line, off a terminal

def train(capsys, workdir, *overrides) -> tuple[int, str, str]:
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), *overrides])
    gc.collect()
    out, err = capsys.readouterr()
    return code, out, err


def test_train_into_a_pipe_says_progress_then_resuming_then_already_complete(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress_lib, "LINE_SECONDS", 0.0)  # a line per step
    workdir = tmp_path / "run"
    code, out, _ = train(capsys, workdir, "--config.num_steps=3")
    assert code == 0, out
    assert "meta-train: compiling" in out
    lines = [line for line in out.splitlines() if re.match(r"\[[-\d: ]+\] meta-train: step \d+/3 ", line)]
    assert len(lines) == 3, out
    assert re.search(r"step 2/3 \(66\.7%\), [\d.]+ (steps/s|s/step), ETA \d", lines[1]), lines[1]
    assert out.splitlines()[-2].startswith("done: 3 steps, ")
    assert "resuming" not in out

    code, out, _ = train(capsys, workdir, "--config.num_steps=4")
    assert code == 0 and "meta-train: resuming from step 3 of 4\n" in out, out
    assert "meta-train: step 4/4 (100.0%)" in out and "done: 4 steps, " in out

    code, out, _ = train(capsys, workdir, "--config.num_steps=4")
    assert code == 0
    assert out.splitlines()[0] == f"already complete: 4 of 4 steps, workdir {workdir}"
    assert "done:" not in out and "compiling" not in out and "steps/s" not in out


def test_ctrl_c_stops_after_the_step_saves_and_says_so(tmp_path, capsys, monkeypatch):
    from metaplastic.core.checkpoint import Checkpointer
    from metaplastic.core.trainer import MetaTrainer

    step = MetaTrainer.train_step

    def step_then_ctrl_c(self):
        metrics = step(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the trainer's handler: stop after this step
        return metrics

    monkeypatch.setattr(MetaTrainer, "train_step", step_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even under nohup
    try:
        code, out, err = train(capsys, tmp_path / "run", "--config.num_steps=5", "--config.checkpoint_every=100")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == cli.EXIT_INTERRUPTED == 130
    assert "metaplastic: Ctrl-C: stopping after step 2 of 5, then saving it; Ctrl-C again quits at once" in out
    assert err.splitlines()[-1] == ("metaplastic: interrupted (Ctrl-C): saved at step 2 of 5; run the same "
                                    "command to resume (exit status 130)")
    assert Checkpointer(tmp_path / "run" / "checkpoints").latest_step() == 2
