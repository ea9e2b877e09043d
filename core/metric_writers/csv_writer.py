"""`workdir/metrics.csv`, one row per logged step (`core.metrics.read_metrics` reads it back)."""

from __future__ import annotations

import csv
import io
import os
import pathlib
from collections.abc import Iterable, Mapping

from metaplastic.core.metric_writers.interface import HParams, MetricWriter, as_number
from metaplastic.core.ops.files import write_atomic


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
        row = {"step": int(step), **{name: as_number(value) for name, value in scalars.items()}}
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

