"""`sklearn_digits`: scikit-learn's 1,797 8×8 handwritten digits (ships with the package).

Dataset name `digits`. Splits: `train` (first 1,200 images), `test` (the rest),
`all`. Pixels scaled from 0..16 to [0, 1].
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.registries import hookimpl

TRAIN_SIZE = 1200


@dataclasses.dataclass(frozen=True)
class SklearnDigits(DataSource):
    def names(self) -> tuple[str, ...]:
        return ("digits",)

    def load(self, dataset: str, split: str) -> Dataset:
        if dataset != "digits":
            raise DatasetUnavailable("only has 'digits'")
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = (bunch.images / 16.0).astype(np.float32)[..., None]
        y = bunch.target.astype(np.int32)
        parts = {"train": slice(0, TRAIN_SIZE), "test": slice(TRAIN_SIZE, None), "all": slice(None)}
        if split not in parts:
            raise DatasetUnavailable(f"digits has splits {sorted(parts)}, not '{split}'")
        return Dataset("digits", x[parts[split]], y[parts[split]], 10, source="sklearn_digits")


@hookimpl
def metaplastic_data_sources():
    return {"sklearn_digits": SklearnDigits}
