"""The interface every metric writer implements (CLU's `clu.metric_writers.MetricWriter`), and the
conversions the writers share."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

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



def as_number(value: Any) -> int | float:
    if hasattr(value, "item"):  # numpy / jax scalars
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    return float(value)

