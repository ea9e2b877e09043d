"""Per-step metrics: pluggable writers in the spirit of CLU's `MetricWriter` (no TensorFlow needed).

`MetricWriter` is the interface (`write_scalars`, `write_hparams`, `flush`, `close`); the writers are

- `CsvWriter`: `workdir/metrics.csv`, one row per logged step, read back by `read_metrics`;
- `TensorBoardWriter`: event files under `workdir/tensorboard`, written synchronously;
- `WandbWriter`: a Weights & Biases run (`pip install metaplastic[wandb]`), id kept in `workdir/wandb_id`;
- `CurvePicture`: `workdir/meta_training_curve.png`, the meta-loss so far, redrawn at most every
  `CURVE_SECONDS` while the run trains and once when it ends;
- `MultiWriter`: fans every call out to several writers.

`MetricsWriter(workdir, resume_step)` is what the trainer uses: CSV + TensorBoard + the curve picture,
plus W&B when the environment variable `METAPLASTIC_WANDB=1` is set and `wandb` is importable.

Crash safety: a run killed at any moment (SIGKILL, an OOM kill) keeps every step whose `write_scalars`
returned: the CSV and TensorBoard writers hand each row to the operating system before returning
(a flush, no fsync: an fsync per row would protect against a power cut too, at about a millisecond a
row on an ordinary disk; pass `fsync=True` for that). A run resumed from a checkpoint at step R
forgets what was logged after R: the CSV drops those rows, and TensorBoard's new event file starts
with a purge event at step R + 1 (a `SessionLog.START`, the same thing tensorboardX's
`purge_step` writes), which hides every earlier event at step > R from TensorBoard's reader.

The module is ~470 lines because the five writers share one interface and one resume rule, which a
reader checks in one place; split, each file would restate them.
"""

from __future__ import annotations

import abc
import csv
import io
import json
import os
import pathlib
import secrets
import socket
import string
import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from metaplastic.core.ops.files import write_atomic

WANDB_ENV = "METAPLASTIC_WANDB"
WANDB_PROJECT = "metaplastic"
HParams = Mapping[str, Any]


class MetricWriter(abc.ABC):
    """Where per-step scalars and a run's hyperparameters go (CLU's `clu.metric_writers.MetricWriter`)."""

    @abc.abstractmethod
    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record the scalars of one step; a non-finite value is recorded as it is."""

    @abc.abstractmethod
    def write_hparams(self, hparams: HParams) -> None:
        """Record the run's hyperparameters (a flat dict of str/float/int/bool: see `flatten_hparams`)."""

    def flush(self) -> None:
        """Hand everything written so far to the operating system."""

    def close(self) -> None:
        """Flush and release; the writer is not used again."""
        self.flush()

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """The trainer's name for `write_scalars`."""
        self.write_scalars(step, metrics)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def flatten_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, str | float | int | bool]:
    """A nested config as one flat dict: nested keys joined with dots, values str/float/int/bool.

    Tuples, lists, None and anything else that is no plain scalar are stringified (`str`)."""
    flat: dict[str, str | float | int | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy / jax scalar
            flat[name] = value.item()
        else:
            flat[name] = str(value)
    return flat


def _as_number(value: Any) -> int | float:
    if hasattr(value, "item"):  # numpy / jax scalars
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    return float(value)


# --------------------------------------------------------------------------------------------- CSV


class CsvWriter(MetricWriter):
    """`workdir/metrics.csv`: a header, then one row per `write_scalars` call (`step` first).

    - Resuming at `resume_step` drops the rows logged after it (they would be logged again).
    - The header is the first row's keys. A key that appears later rewrites the file (atomically)
      with the key appended to the header; rows without a key get `nan` for it, so every row
      stays readable as numbers by `read_metrics`.
    - A row whose values are non-finite (a skipped step) is written like any other (`nan`, `inf`).
    - Each row is flushed to the operating system before `write_scalars` returns (see the module
      docstring). A last line cut short by a crash mid-write is dropped on open.
    - `write_hparams` does nothing: the trainer keeps the config in `workdir/config.json`.
    """

    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0, fsync: bool = False):
        self.path = pathlib.Path(workdir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.fields: list[str] | None = None
        self._file: io.TextIOWrapper | None = None
        self._open(resume_step)

    def _open(self, resume_step: int) -> None:
        if not self.path.exists():
            return
        text = self.path.read_text()
        if text and not text.endswith("\n"):  # a row cut short by a crash mid-write
            text = text[: text.rfind("\n") + 1]
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if not header:
            self.path.unlink()
            return
        rows = list(reader)
        kept = [row for row in rows if row and int(float(row[0])) <= resume_step]
        self.fields = header
        if len(kept) != len(rows) or len(text.encode()) != self.path.stat().st_size:
            self._rewrite(header, kept)
        self._file = self.path.open("a", newline="")

    def _rewrite(self, fields: list[str], rows: Iterable[list[str]]) -> None:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(fields)
        writer.writerows(rows)
        write_atomic(self.path, buffer.getvalue().encode())

    def _add_fields(self, new: list[str]) -> None:
        """Append `new` to the header, rewriting the rows written so far with `nan` in the new columns."""
        if self._file is not None:
            self._file.close()
        with self.path.open(newline="") as f:
            rows = [row for row in list(csv.reader(f))[1:] if row]
        width = len(self.fields)
        self.fields = self.fields + new
        self._rewrite(self.fields, [row + ["nan"] * (width + len(new) - len(row)) for row in rows])
        self._file = self.path.open("a", newline="")

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        row = {"step": int(step), **{name: _as_number(value) for name, value in scalars.items()}}
        if self.fields is None:
            self.fields = list(row)
            self._file = self.path.open("w", newline="")
            csv.writer(self._file).writerow(self.fields)
        else:
            new = [name for name in row if name not in self.fields]
            if new:
                self._add_fields(new)
        csv.DictWriter(self._file, fieldnames=self.fields, restval="nan").writerow(row)
        self.flush()

    def write_hparams(self, hparams: HParams) -> None:
        pass

    def flush(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self.flush()
            self._file.close()


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, float]]:
    with (pathlib.Path(workdir) / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


# ------------------------------------------------------------------------------------- TensorBoard


class TensorBoardWriter(MetricWriter):
    """TensorBoard event files under `workdir/tensorboard` (tensorboardX's protos and record framing).

    Why not `tensorboardX.SummaryWriter` itself: it hands events to a background thread through a
    queue, and its `flush()` flushes the file without waiting for that queue, so a run killed right
    after a step can lose the step's events whatever `flush_secs` is. This writer writes and
    flushes each event in the caller's thread instead.

    - Each writer opens a new event file whose name sorts after every event file already there
      (TensorBoard reads a run's files in name order).
    - When resuming (`resume_step > 0`), or when earlier event files are there, the new file starts
      with a purge event at `resume_step + 1`, as `SummaryWriter(purge_step=resume_step + 1)` would
      write it: TensorBoard's reader then drops the earlier events at steps > `resume_step`, so a
      crash and resume shows each step once.
    - `write_hparams` writes the HParams plugin's session-start summary into this run's own file
      (not `add_hparams`' extra sub-run per call, which would show as a second run with only the
      metrics passed to it), so the HParams dashboard lists this run with all its scalars as
      metrics; and the same values as JSON under the text tag `hparams`.
    """

    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0,
                 subdir: str = "tensorboard", fsync: bool = False):
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self.logdir = pathlib.Path(workdir) / subdir
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        earlier = sorted(p.name for p in self.logdir.glob("events.out.tfevents.*"))
        self.path = self.logdir / self._file_name(earlier)
        self._file = self.path.open("xb")
        self._write_event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.purge_step = resume_step + 1 if resume_step > 0 or earlier else None
        if self.purge_step is not None:
            self._write_event(Event(wall_time=time.time(), step=self.purge_step,
                                    session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    @staticmethod
    def _file_name(earlier: list[str]) -> str:
        """`events.out.tfevents.<seconds>.<host>.<pid>`, with <seconds> raised past the newest file."""
        seconds = int(time.time())
        for name in earlier:
            parts = name.split(".")
            if len(parts) > 3 and parts[3].isdigit():
                seconds = max(seconds, int(parts[3]) + 1)
        return f"events.out.tfevents.{seconds:010d}.{socket.gethostname()}.{os.getpid()}"

    def _write_event(self, event) -> None:
        import struct

        from tensorboardX.record_writer import masked_crc32c

        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data
                         + struct.pack("<I", masked_crc32c(data)))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import scalar

        values = [value for name, number in scalars.items() for value in scalar(name, _as_number(number)).value]
        # one event per step: a step's scalars reach the file together or not at all
        self._write_event(Event(wall_time=time.time(), step=int(step), summary=Summary(value=values)))
        self.flush()

    def write_hparams(self, hparams: HParams) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import hparams as hparams_summaries
        from tensorboardX.summary import text

        flat = flatten_hparams(hparams)
        _, session_start, _ = hparams_summaries(flat, {})
        now = time.time()
        self._write_event(Event(wall_time=now, step=0, summary=session_start))
        listing = json.dumps(flat, indent=2, sort_keys=True, default=str)
        self._write_event(Event(wall_time=now, step=0,
                                summary=text("hparams", "\n".join("    " + line for line in listing.splitlines()))))
        self.flush()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


# ------------------------------------------------------------------------------------ Weights & Biases


def wandb_available() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


class WandbWriter(MetricWriter):
    """A Weights & Biases run in `workdir/wandb`, resumed across restarts of the same workdir.

    The run id is made once and kept in `workdir/wandb_id`, and `wandb.init(resume="allow")` joins
    that run again after a restart. Set `WANDB_MODE=offline` to write the run only to disk (sync it
    later with `wandb sync workdir/wandb/offline-run-*`). W&B keeps one value per step and refuses
    steps below the highest it has seen, so after a resume from step R the steps R+1.. logged again
    are dropped by W&B with a warning (its first record of them stays); the CSV and TensorBoard
    writers replace them.
    """

    def __init__(self, workdir: str | os.PathLike, config_dict: HParams | None = None,
                 resume_step: int = 0, project: str = WANDB_PROJECT, **init_kwargs):
        try:
            import wandb
        except ImportError as e:
            raise ImportError("WandbWriter needs wandb: pip install 'metaplastic[wandb]'") from e
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        id_path = workdir / "wandb_id"
        if id_path.exists() and id_path.read_text().strip():
            run_id = id_path.read_text().strip()
        else:
            alphabet = string.ascii_lowercase + string.digits  # W&B's own id alphabet
            run_id = "".join(secrets.choice(alphabet) for _ in range(8))
            write_atomic(id_path, run_id.encode())
        self.run_id = run_id
        self.resume_step = resume_step
        config = flatten_hparams(config_dict) if config_dict else None
        self.run = wandb.init(project=project, dir=str(workdir), config=config, resume="allow",
                              id=run_id, **init_kwargs)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log({name: _as_number(value) for name, value in scalars.items()}, step=int(step))

    def write_hparams(self, hparams: HParams) -> None:
        self.run.config.update(flatten_hparams(hparams), allow_val_change=True)

    def close(self) -> None:
        """Finish the run, then wait for W&B's service process to write it out (`wandb.teardown`):
        `run.finish()` alone returns before an offline run's `.wandb` file holds the run (seen with
        wandb 0.31: about half the time only its 7-byte header, the records following later)."""
        if self.run is not None:
            import wandb

            self.run.finish()
            self.run = None
            if hasattr(wandb, "teardown"):
                wandb.teardown()


# ------------------------------------------------------------------------------------ the picture

CURVE_FILE = "meta_training_curve.png"
CURVE_SECONDS = 60.0  # a redraw costs ~0.1-0.3 s: at most once a minute, and once at the end


class CurvePicture(MetricWriter):
    """`workdir/meta_training_curve.png`: the meta-loss of every logged θ-step and its running mean,
    read back from metrics.csv (so a resumed run's picture covers the whole run). Redrawn when a row
    arrives `every` seconds after the last drawing, and at `close`; written atomically. A picture that
    cannot be drawn or written is said once on stderr and never stops the run."""

    def __init__(self, workdir: str | os.PathLike, every: float = CURVE_SECONDS):
        self.workdir = pathlib.Path(workdir)
        self.every = every
        self._drawn_at = time.monotonic()
        self._pending = False
        self._rule = ""
        self._broken = False

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._pending = True
        if time.monotonic() - self._drawn_at >= self.every:
            self.draw()

    def write_hparams(self, hparams: HParams) -> None:
        self._rule = str(hparams.get("update_rule", "") or "")

    def close(self) -> None:
        if self._pending:
            self.draw()

    def draw(self) -> None:
        self._drawn_at, self._pending = time.monotonic(), False
        if self._broken:
            return
        try:
            with (self.workdir / "metrics.csv").open(newline="") as f:
                rows = [row for row in csv.DictReader(f) if row.get("step", "").isdigit()]
            if not rows:
                return
            from metaplastic.core.evaluation.pictures import DPI, meta_training_curve_figure

            rule = f"{self._rule} " if self._rule else ""
            figure = meta_training_curve_figure(
                rows, f"Meta-training of {rule}({self.workdir.name}), {rows[-1]['step']} θ-steps so far")
            image = io.BytesIO()
            figure.savefig(image, dpi=DPI, format="png")
            write_atomic(self.workdir / CURVE_FILE, image.getvalue())
        except (OSError, ValueError, RuntimeError) as error:
            self._broken = True
            print(f"metaplastic: {self.workdir / CURVE_FILE} not drawn ({type(error).__name__}: {error}); "
                  "the run goes on", file=sys.stderr)


# ------------------------------------------------------------------------------------------ fan-out


class MultiWriter(MetricWriter):
    """Every call goes to each writer in turn; `close` closes them all even if one fails."""

    def __init__(self, writers: Iterable[MetricWriter]):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for writer in self.writers:
            writer.write_scalars(step, scalars)

    def write_hparams(self, hparams: HParams) -> None:
        for writer in self.writers:
            writer.write_hparams(hparams)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        errors = []
        for writer in self.writers:
            try:
                writer.close()
            except Exception as e:  # close the rest, then raise the first
                errors.append(e)
        if errors:
            raise errors[0]


class MetricsWriter(MultiWriter):
    """The trainer's writer: CSV + TensorBoard + the curve picture, + W&B when `METAPLASTIC_WANDB=1` and
    wandb imports.

    `write(step, metrics)` is `write_scalars`; `write_hparams(config_dict)` takes the resolved
    (possibly nested) config and flattens it (`flatten_hparams`)."""

    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0):
        self.csv = CsvWriter(workdir, resume_step=resume_step)
        self.tensorboard = TensorBoardWriter(workdir, resume_step=resume_step)
        self.curve = CurvePicture(workdir)  # after the CSV: it draws what the CSV holds
        writers: list[MetricWriter] = [self.csv, self.tensorboard, self.curve]
        self.wandb: WandbWriter | None = None
        if os.environ.get(WANDB_ENV) == "1":
            if wandb_available():
                self.wandb = WandbWriter(workdir, resume_step=resume_step)
                writers.append(self.wandb)
            else:
                warnings.warn(f"{WANDB_ENV}=1 but wandb is not installed (pip install 'metaplastic[wandb]'): "
                              "logging to CSV and TensorBoard only", stacklevel=2)
        super().__init__(writers)
        self.path = self.csv.path

    def write_hparams(self, hparams: HParams) -> None:
        super().write_hparams(flatten_hparams(hparams))


__all__ = ["MetricWriter", "CsvWriter", "TensorBoardWriter", "WandbWriter", "CurvePicture", "MultiWriter",
           "MetricsWriter",
           "flatten_hparams", "read_metrics", "wandb_available", "WANDB_ENV"]
