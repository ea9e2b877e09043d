"""`idx`: datasets stored as IDX files (the MNIST / Fashion-MNIST format), read offline.

A dataset `name` is a folder holding `train-images-idx3-ubyte`,
`train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`
(each optionally `.gz`). Splits: `train`, `test`. Folders searched, first hit wins:

  $METAPLASTIC_IDX_DIR (os.pathsep-separated roots), <cache_dir>/idx,
  /usr/share/datasets (Debian: `apt-get install dataset-fashion-mnist`),
  ~/.keras/datasets, ~/data
each as <root>/<name>, <root>/<name with '-'>, <root>/<TorchName>/raw.
Any name works (kmnist, ...); mnist and fashion_mnist also match their usual folder names.
Parsed arrays are cached (uint8) under <cache_dir>/idx-cache keyed by the files' size and mtime.
"""

from __future__ import annotations

import dataclasses
import gzip
import pathlib

import numpy as np

from metaplastic.core.data import cache_dir, cache_key, cached_arrays, file_stamp, search_dirs, to_unit_float
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.registries import hookimpl

IDX_ENV = "METAPLASTIC_IDX_DIR"
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
ALIASES = {  # extra folder names people use (Debian, torchvision, Keras)
    "mnist": ("MNIST/raw", "MNIST"),
    "fashion_mnist": ("FashionMNIST/raw", "FashionMNIST"),
    "kmnist": ("KMNIST/raw", "KMNIST"),
}
HOW_TO = {
    "fashion_mnist": "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or put the four "
                     "Fashion-MNIST .gz files in $METAPLASTIC_IDX_DIR/fashion_mnist/",
    "mnist": "put the four MNIST .gz files (train-images-idx3-ubyte.gz, ...) in "
             "$METAPLASTIC_IDX_DIR/mnist/",
}
# names for people; 'fashion' is the short name study keys use ('fashion_14')
DISPLAY_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "fashion": "Fashion-MNIST"}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: pathlib.Path) -> np.ndarray:
    """One IDX file (optionally gzipped) as a NumPy array."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(f"{path}: not an IDX file")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    return np.frombuffer(raw, _DTYPES[raw[2]], offset=4 + 4 * ndim).reshape(shape)


def _roots() -> list[pathlib.Path]:
    cache = cache_dir()
    return search_dirs(IDX_ENV, *([cache / "idx"] if cache else []), "/usr/share/datasets",
                       "~/.keras/datasets", "~/data")


def _candidates(name: str) -> list[pathlib.Path]:
    names = dict.fromkeys([name, name.replace("_", "-"), *ALIASES.get(name, ())])
    return [root / sub for root in _roots() for sub in names]


def _find(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    for suffix in ("", ".gz"):
        path = folder / (stem + suffix)
        if path.is_file():
            return path
    return None


def find_idx(name: str, split: str) -> tuple[pathlib.Path, pathlib.Path] | None:
    prefix = SPLIT_PREFIX[split]
    for folder in _candidates(name):
        images = _find(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find(folder, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            return images, labels
    return None


@dataclasses.dataclass(frozen=True)
class IdxSource(DataSource):
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*ALIASES, *HOW_TO]))  # any other name: a folder of IDX files

    def display_name(self, dataset: str) -> str | None:
        return DISPLAY_NAMES.get(dataset)

    def load(self, dataset: str, split: str) -> Dataset:
        if split not in SPLIT_PREFIX:
            raise DatasetUnavailable(f"IDX datasets have splits {sorted(SPLIT_PREFIX)}, not '{split}'")
        if "/" in dataset or dataset.startswith("."):
            raise DatasetUnavailable(f"'{dataset}' is not an IDX dataset name")
        found = find_idx(dataset, split)
        if found is None:
            roots = ", ".join(str(r) for r in _roots())
            how = HOW_TO.get(dataset, f"put its IDX files in $METAPLASTIC_IDX_DIR/{dataset}/")
            raise DatasetUnavailable(f"no {SPLIT_PREFIX[split]}-images/labels IDX files for '{dataset}' "
                                     f"under {roots}; {how}")
        def parse():  # gunzip + parse once; later loads read the uncompressed cache
            images, labels = (read_idx(p) for p in found)
            return {"x": images, "y": labels}

        arrays = cached_arrays("idx-cache", cache_key(dataset, split, *map(file_stamp, found)), parse)
        images, labels = arrays["x"], arrays["y"]
        if len(images) != len(labels) or images.ndim != 3:
            raise DatasetUnavailable(f"{found[0]}: images {images.shape} do not match labels {labels.shape}")
        y = labels.astype(np.int32)
        x = to_unit_float(images[..., None])
        return Dataset(dataset, x, y, int(y.max()) + 1, source=f"idx:{found[0].parent}")


@hookimpl
def metaplastic_data_sources():
    return {"idx": IdxSource}
