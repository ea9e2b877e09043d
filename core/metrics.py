"""`workdir/metrics.csv`, the per-step metrics of a meta-training run: `read_metrics` is the one reader
of that file. The writers (`metrics.csv`, TensorBoard, W&B, the curve picture) are in
`core.metric_writers`."""

from __future__ import annotations

import csv
import pathlib


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, float]]:
    """The rows of `workdir/metrics.csv` as numbers; the one reader of that file (a last row cut short
    by a crash mid-write is left out, as `CsvWriter` drops it on open)."""
    with (pathlib.Path(workdir) / "metrics.csv").open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)
                if None not in row and None not in row.values() and "" not in row.values()]
