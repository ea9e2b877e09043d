"""Per-step metrics to CSV and TensorBoard event files (no TensorFlow needed)."""

from __future__ import annotations

import csv
import pathlib


class MetricsWriter:
    def __init__(self, workdir: str | pathlib.Path, resume_step: int = 0):
        self.path = pathlib.Path(workdir) / "metrics.csv"
        self._drop_rows_after(resume_step)
        from tensorboardX import SummaryWriter

        self.tensorboard = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))
        self.fields: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open() as f:
                self.fields = next(csv.reader(f), None)

    def _drop_rows_after(self, step: int) -> None:
        """Rows logged after the checkpoint we resume from would be logged again."""
        if not self.path.exists():
            return
        with self.path.open() as f:
            rows = list(csv.DictReader(f))
            fields = rows and list(rows[0].keys())
        if not rows:
            return
        kept = [row for row in rows if int(row["step"]) <= step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        if self.fields is None:
            self.fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        for name, value in metrics.items():
            self.tensorboard.add_scalar(name, value, step)

    def close(self) -> None:
        self.tensorboard.close()


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, float]]:
    with (pathlib.Path(workdir) / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
