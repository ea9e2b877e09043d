"""What a long command says while it works, one way for `train` and `evaluate`.

`Progress` follows a count of units (meta-training's θ-steps, an evaluation's cells) in one of three
modes: "bar" (a tqdm bar, for a person at a terminal), "lines" (a timestamped line every
`every_seconds`, for a log file, nohup or a batch job) or "off". Both show done/total, the rate and an
ETA; as in CLU's `periodic_actions.ReportProgress`, the rate leaves out the first unit of a session,
which pays for compilation. Its notices (compiling, resuming, stopping) go to the same stream.

`StopSignals` turns SIGTERM (a scheduler's preemption, `kill`) and Ctrl-C into a request to stop after
the current unit, and says so at once, also while XLA compiles (which cannot be cut short: an interrupt
raised inside a compilation was seen to end the process in a segmentation fault). A second Ctrl-C quits
at once, as a kill would: every save is atomic, so the newest checkpoint or cell stands.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable, TextIO

MODES = ("bar", "lines", "off")
LINE_SECONDS = 30.0  # "lines": seconds between lines


def progress_mode(progress: bool | str | None) -> str:
    """True = "bar", False or None = "off", else one of MODES."""
    if progress is True:
        return "bar"
    if progress is False or progress is None:
        return "off"
    if progress not in MODES:
        raise ValueError(f"progress: expected True, False or one of {', '.join(MODES)}, got {progress!r}")
    return progress


def duration(seconds: float) -> str:
    """12s, 4m05s, 2h24m, 3d04h."""
    seconds = max(int(round(seconds)), 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class Progress:
    """Progress of `total` units of which `done` were done before this session (see the module doc).

    `clock` (seconds, monotonic), `stream` (default: stdout at the time of writing) and `stamp` (the
    lines' timestamp) are there for tests."""

    def __init__(self, what: str, total: int, done: int = 0, unit: str = "step", mode: str = "lines",
                 every_seconds: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, stamp: Callable[[], str] = _timestamp):
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        self.what, self.total, self.done, self.unit, self.mode = what, int(total), int(done), unit, mode
        self.every_seconds = LINE_SECONDS if every_seconds is None else every_seconds
        self._stream, self._clock, self._stamp = stream, clock, stamp
        self.started = clock()
        self.compiling = False       # until the first unit of this session is done
        self._first = None           # (clock, done) when the session's first unit was done: the rate's origin
        self._last_line = None
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc=what, unit=unit, dynamic_ncols=True)

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def units(self, n: int) -> str:
        return f"{n} {self.unit}" if n == 1 else f"{n} {self.unit}s"

    # -- numbers --------------------------------------------------------------
    def rate(self) -> float | None:
        """Units per second since the session's first unit (which compiled); None before a second."""
        if self._first is None or self.done <= self._first[1]:
            return None
        since, done = self._first
        return (self.done - done) / max(self._clock() - since, 1e-9)

    def eta(self) -> float | None:
        """Seconds to `total` at the current rate (None while unknown)."""
        rate = self.rate()
        return None if rate is None else max(self.total - self.done, 0) / rate

    def line(self, note: str = "") -> str:
        """e.g. `meta-train: step 68/20000 (0.3%), 2.31 steps/s, ETA 2h24m | meta_loss 1.0956`."""
        percent = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.what}: {self.unit} {self.done}/{self.total} ({percent:.1f}%)"
        rate, elapsed = self.rate(), self._clock() - self.started
        if rate is None:
            text += f", {duration(elapsed)} so far (with compiling)"
        else:
            speed = f"{rate:.2f} {self.unit}s/s" if rate >= 1 else f"{1 / rate:.1f} s/{self.unit}"
            left = f"ETA {duration(self.eta())}" if self.done < self.total else f"{duration(elapsed)} in all"
            text += f", {speed}, {left}"
        return f"{text} | {note}" if note else text

    # -- what it says -----------------------------------------------------------
    def update(self, done: int | None = None, note: str = "") -> None:
        """`done` units now (default: one more); `note` (e.g. the loss) goes on the bar or the line.
        A line is written after the session's first unit, every `every_seconds` and at `total`."""
        now = self._clock()
        advance = 1 if done is None else int(done) - self.done
        self.done += advance
        first = self._first is None
        if first:
            self._first, self.compiling = (now, self.done), False
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(advance)
        elif self.mode == "lines" and (first or self.done >= self.total
                                       or now - self._last_line >= self.every_seconds):
            self._last_line = now
            self._write(f"[{self._stamp()}] {self.line(note)}")

    def notice(self, text: str) -> None:
        """A one-off line (not in "off" mode), beside the bar or between the lines."""
        if self.mode == "lines":
            self._write(f"[{self._stamp()}] {self.what}: {text}")
        elif self._bar is not None:
            self._bar.write(f"{self.what}: {text}", file=self.stream)
            self.stream.flush()

    def compiling_notice(self) -> None:
        """Before the session's first (compiled) unit: it may take minutes and say nothing."""
        self.compiling = True
        self.notice(f"compiling (the first {self.unit} takes longest; later ones reuse it)…")

    def resuming_notice(self) -> None:
        if 0 < self.done < self.total:
            self.notice(f"resuming from {self.unit} {self.done} of {self.total}")

    def urgent(self, text: str) -> None:
        """A line written at once, also from a signal handler (which may have interrupted a write to the
        same stream: the file descriptor is written directly). Said even in "off" mode, to stderr then."""
        stream = self.stream if self.mode != "off" else sys.stderr
        data = (("\n" if self._bar is not None else "") + f"metaplastic: {text}\n").encode()
        try:
            os.write(stream.fileno(), data)
        except (AttributeError, OSError, ValueError):  # no file descriptor (a test's StringIO)
            try:
                stream.write(data.decode())
                stream.flush()
            except (OSError, ValueError, RuntimeError):
                pass

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class StopSignals:
    """While installed (main thread only): the first SIGTERM or Ctrl-C sets `requested` and `signal` (its
    name) and says at once where the loop will stop (`then`: what happens after); a second Ctrl-C quits
    at once (exit status 130) after `quit_note()` says what the same command resumes from. A signal
    that was ignored when this started (SIGINT of a background job) stays ignored."""

    NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}

    def __init__(self, progress: Progress, then: str, quit_note: Callable[[], str]):
        self.progress, self.then, self.quit_note = progress, then, quit_note
        self.requested = False  # may also be set by the loop itself (e.g. validation's patience)
        self.signal: str | None = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for number in self.NAMES:
                if signal.getsignal(number) is not signal.SIG_IGN:
                    self._previous[number] = signal.signal(number, self._handle)

    @property
    def signalled(self) -> bool:
        return self.signal is not None

    def _handle(self, number, frame) -> None:
        name, progress = self.NAMES[number], self.progress
        if self.signal is None:
            self.signal, self.requested = name, True
            unit = f"{progress.unit} {progress.done + 1} of {progress.total}"
            how = " (after compiling it, which cannot be cut short)" if progress.compiling else ""
            again = "; Ctrl-C again quits at once" if number == signal.SIGINT else ""
            progress.urgent(f"{name}: stopping after {unit}{how}, then {self.then}{again}")
        elif number == signal.SIGINT:
            progress.urgent(f"Ctrl-C again: quitting at once at {progress.unit} {progress.done} of "
                            f"{progress.total}; {self.quit_note()}")
            os._exit(130)

    def restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}
