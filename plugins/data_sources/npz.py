"""`npz`: datasets from NumPy .npz files you made yourself (offline; no pickles).

Dataset `name` is found, first hit wins, as
  <root>/<name>.npz              with arrays x_<split>, y_<split> (the Keras layout:
                                 x_train, y_train, x_test, y_test), or
  <root>/<name>_<split>.npz or <root>/<name>/<split>.npz   with arrays x, y,
for root in $METAPLASTIC_NPZ_DIR (os.pathsep-separated), then <cache_dir>/npz.
A dataset name that is itself a path to an .npz file (`/data/foo.npz`) is read directly.

Arrays: x [N, H, W] or [N, H, W, C] images (uint8 0..255 or float in [0, 1]),
[N, D] features, or [N] strings (text, e.g. an IMDB-style corpus); y [N] integer
labels 0..num_classes-1. An optional scalar `num_classes` overrides max(y) + 1.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from metaplastic.core.data import cache_dir, search_dirs, to_unit_float
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.core.ops.files import read_npz
from metaplastic.registries import hookimpl

NPZ_ENV = "METAPLASTIC_NPZ_DIR"


def _roots() -> list[pathlib.Path]:
    cache = cache_dir()
    return search_dirs(NPZ_ENV, *([cache / "npz"] if cache else []))


def _locate(dataset: str, split: str) -> tuple[pathlib.Path, str] | None:
    """(file, key suffix): suffix '_<split>' for the one-file layout, '' for per-split files."""
    if dataset.endswith(".npz"):
        path = pathlib.Path(dataset).expanduser()
        return (path, f"_{split}") if path.is_file() else None
    for root in _roots():
        for path, suffix in ((root / f"{dataset}.npz", f"_{split}"),
                             (root / f"{dataset}_{split}.npz", ""),
                             (root / dataset / f"{split}.npz", "")):
            if path.is_file():
                return path, suffix
    return None


def prepare_x(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "US":  # text: keep as Python strings
        return x.astype(str).astype(object)
    if x.ndim == 3:
        x = x[..., None]
    return to_unit_float(x)


@dataclasses.dataclass(frozen=True)
class NpzSource(DataSource):
    def load(self, dataset: str, split: str) -> Dataset:
        found = _locate(dataset, split)
        if found is None:
            where = ", ".join(str(r) for r in _roots()) or "(no folders: set METAPLASTIC_NPZ_DIR)"
            raise DatasetUnavailable(
                f"no {dataset}.npz (arrays x_{split}, y_{split}) or {dataset}_{split}.npz (arrays x, y) "
                f"under {where}; write one with numpy.savez and set $METAPLASTIC_NPZ_DIR")
        path, suffix = found
        keys = (f"x{suffix}", f"y{suffix}")
        arrays = read_npz(path, only=(*keys, "num_classes"))  # NpzError: one line saying why it is no .npz
        missing = [k for k in keys if k not in arrays]
        if missing:
            with np.load(path, allow_pickle=False) as stored:
                names = sorted(stored.files)
            raise DatasetUnavailable(f"{path} has no arrays {missing} for split '{split}' (has {names})")
        x, y = arrays[keys[0]], arrays[keys[1]]
        if "num_classes" in arrays:
            num_classes = int(arrays["num_classes"])
        else:  # no rows: the engine's dataset check says so
            num_classes = int(y.max()) + 1 if y.size and np.issubdtype(y.dtype, np.integer) else 1
        if len(x) != len(y) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DatasetUnavailable(f"{path}: need x [N, ...] and integer labels y [N]; "
                                     f"got x {x.shape}, y {y.shape} {y.dtype}")
        return Dataset(dataset, prepare_x(x), y.astype(np.int32), num_classes, source=f"npz:{path}")


@hookimpl
def metaplastic_data_sources():
    return {"npz": NpzSource}
