"""Fan-out: every call goes to several writers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from metaplastic.core.metric_writers.interface import HParams, MetricWriter


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

