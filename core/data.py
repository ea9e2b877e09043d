"""Dataset lookup across every registered data source, plus the host-side helpers
data sources and task families share: an on-disk array cache and search paths.

Data sources are built with their config fields: `config.data_sources.<source>.<field>` of a
training config or study (`configure_data_sources`, called by the trainer and `run_study`);
a source it does not name is built with its defaults.

Environment:
  METAPLASTIC_CACHE_DIR   where prepared arrays are cached (default
                          $XDG_CACHE_HOME/metaplastic or ~/.cache/metaplastic);
                          set it to "off" to disable the file cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
import json
import logging
import os
import pathlib
import sys
import zipfile
import zlib
from typing import Any, Callable, Mapping

import numpy as np

from metaplastic.core.errors import ConfigError, UserError, one_line
from metaplastic.core.interfaces import Dataset, DatasetUnavailable
from metaplastic.core.ops.files import NpzError, read_npz, save_npz_atomic

CACHE_ENV = "METAPLASTIC_CACHE_DIR"

# source name -> its config fields (`config.data_sources`); sources not named use their defaults
_SOURCE_SETTINGS: dict[str, dict[str, Any]] = {}
_DERIVED_CACHES: list = []


def dataset_cache(maxsize: int):
    """`functools.lru_cache` for what is computed from datasets looked up by name: cleared, as
    `load_dataset`'s own cache is, when the data sources' settings change (a name may then mean
    other data)."""
    def wrap(function):
        cached = functools.lru_cache(maxsize=maxsize)(function)
        _DERIVED_CACHES.append(cached)
        return cached
    return wrap


def configure_data_sources(settings: Mapping[str, Mapping[str, Any]] | None) -> None:
    """From now on, build data source `name` with the fields `settings[name]` (a resolved
    `config.data_sources`: {source name: {field: value}}); sources it does not name, with their
    defaults. None or {}: every source with its defaults, as before any settings."""
    global _SOURCE_SETTINGS
    if hasattr(settings, "to_dict"):  # a ConfigDict section
        settings = settings.to_dict()
    frozen = {str(name): {str(k): tuple(v) if isinstance(v, list) else v for k, v in dict(fields).items()}
              for name, fields in dict(settings or {}).items()}
    for name, fields in frozen.items():  # a value its source refuses stops here, before any work,
        _build_source(name, fields)        # and leaves the settings in force as they were
    if frozen != _SOURCE_SETTINGS:
        _SOURCE_SETTINGS = frozen
        load_dataset.cache_clear()
        for cache in _DERIVED_CACHES:
            cache.cache_clear()


def data_source(name: str):
    """The registered data source `name`, built with its configured fields; a field value the
    source refuses is a one-line ConfigError naming `config.data_sources.<name>`."""
    return _build_source(name, _SOURCE_SETTINGS.get(name, {}))


@dataset_cache(maxsize=256)
def dataset_display_name(dataset: str) -> str | None:
    """The name for people that the first registered source (in name order) gives `dataset`
    (`DataSource.display_name`), or None when none names it."""
    from metaplastic.registries import get_registry

    for source_name in get_registry().names("data_source"):
        name = data_source(source_name).display_name(dataset)
        if name:
            return name
    return None


def _build_source(name: str, fields: Mapping[str, Any]):
    from metaplastic.registries import get_registry

    factory = get_registry().get("data_source", name)
    try:
        return factory(**fields)
    except UserError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config.data_sources.{name}: {one_line(error)}") from None


@functools.lru_cache(maxsize=32)
def load_dataset(name: str, split: str, source: str | None = None) -> Dataset:
    """`name`/`split` from `source`, or from the first registered source that has it (in name order),
    each source built with its configured fields (`configure_data_sources`).

    A source that has the dataset but cannot read it (a damaged file, empty arrays) is a BadDataset
    naming the dataset, split and source; `DatasetUnavailable` means "not here", and the next source
    is tried."""
    from metaplastic.registries import get_registry

    registry = get_registry()
    sources = [source] if source else registry.names("data_source")
    reasons = []
    for source_name in sources:
        built = data_source(source_name)
        try:
            with _quiet_library_logs():
                found = built.load(name, split)
        except DatasetUnavailable as why:
            reasons.append((source_name, str(why), built))
            continue
        except UserError as error:  # the source's own one-line reason (BadDataset, NpzError, ...)
            named = isinstance(error, NpzError) and error.path == pathlib.Path(name).expanduser()
            raise BadDataset(f"dataset '{name}' split '{split}' (source {source_name}): "
                             f"{error.reason if named else error}") from error
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise BadDataset(f"dataset '{name}' split '{split}' (source {source_name}): unreadable "
                             f"({one_line(error, with_type=True)})") from error
        return checked_dataset(found, name, split, source_name)
    raise DatasetUnavailable(unavailable_message(name, split, reasons))


def unavailable_message(name: str, split: str, reasons: list[tuple[str, str, Any]]) -> str:
    """One line for a dataset no source had, from (source name, its reason, the source): only the
    reasons of the sources that know the name (`DataSource.names`); for a name none knows, the
    closest known names, else the reasons of the sources that read files of any name (npz)."""
    if not reasons:
        return f"dataset '{name}' split '{split}' is unavailable: no data sources registered"
    known = {source_name: _source_names(source) for source_name, _, source in reasons}
    knowing = [(source_name, why) for source_name, why, _ in reasons if name in known[source_name]]
    if knowing or len(reasons) == 1:
        shown = knowing or [(source_name, why) for source_name, why, _ in reasons]
        return (f"dataset '{name}' split '{split}' is unavailable; "
                + "; ".join(f"{source_name}: {why}" for source_name, why in shown))
    files = [f"{source_name}: {why}" for source_name, why, _ in reasons if not known[source_name]]
    if "/" in name or name.endswith(".npz"):  # a path: only the sources that read files can have it
        return f"dataset '{name}' split '{split}' is unavailable; " + "; ".join(files or ["no source reads files"])
    head = f"dataset '{name}' split '{split}' is unavailable: no data source knows the name"
    close = difflib.get_close_matches(name, sorted({n for names in known.values() for n in names}), n=3,
                                      cutoff=0.75)
    if close:
        return f"{head}; did you mean {', '.join(repr(c) for c in close)}?"
    return f"{head}{'; ' if files else ''}{'; '.join(files)} (`metaplastic plugins` lists the data sources)"


def _source_names(source) -> tuple[str, ...]:
    try:
        return tuple(source.names())
    except Exception:  # noqa: BLE001 - a source's suggestions must never hide the real message
        return ()


@contextlib.contextmanager
def _quiet_library_logs():
    """Warnings that libraries log while a source looks for a dataset (absl's, from TFDS: a folder
    without dataset_info.json) stay out of the output: a missing dataset is said in one line, and
    a found one needs no notes."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class BadDataset(UserError, ValueError):
    """A data source returned a dataset that cannot be trained or evaluated on (NaN pixels, labels
    out of range, no rows, ...); the one-line message names the dataset, split and source."""


# More classes than this and more classes than rows: a stray label (1e9), not a real label set.
MAX_SPARSE_CLASSES = 10_000


def checked_dataset(data: Dataset, name: str, split: str, source: str) -> Dataset:
    """`data` if it is usable, with float images given in 0..255 scaled to [0, 1] (said once on
    stderr); otherwise BadDataset in one line."""
    where = f"dataset '{name}' split '{split}' (source {source})"

    def bad(problem: str) -> BadDataset:
        return BadDataset(f"{where}: {problem}")

    x, y = np.asarray(data.x), np.asarray(data.y)
    if x.ndim == 0 or y.ndim != 1:
        raise bad(f"need x [N, ...] and labels y [N]; got x {x.shape}, y {y.shape}")
    if len(x) != len(y):
        raise bad(f"x has {len(x)} rows but y has {len(y)} labels")
    if len(y) == 0:
        raise bad("no examples (x and y have 0 rows)")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise bad(f"labels y must be integers, got dtype {y.dtype}")
    num_classes = data.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise bad(f"num_classes must be an integer >= 1, got {num_classes!r}")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise bad(f"labels must be in 0..{num_classes - 1} (num_classes {num_classes}); "
                  f"found min {low}, max {high}")
    if num_classes > MAX_SPARSE_CLASSES and num_classes > len(y):
        raise bad(f"num_classes {num_classes} (largest label {high}) is more than the {len(y)} examples; "
                  "labels must be 0..num_classes-1 with no gaps this large")
    if x.dtype.kind in "fc":  # text (str/object) and integer pixels cannot be non-finite
        if not np.isfinite(np.sum(x, dtype=np.complex128 if x.dtype.kind == "c" else np.float64)):
            count = int(x.size - np.count_nonzero(np.isfinite(x)))
            if count:
                raise bad(f"{count} non-finite values (NaN or inf) in x")
        if x.dtype.kind == "f" and x.ndim >= 3:
            low_x, high_x = float(x.min()), float(x.max())
            if high_x > 1.5:
                if low_x < 0 or high_x > 255:
                    raise bad(f"float images must be in [0, 1] (or 0..255); found min {low_x:g}, max {high_x:g}")
                print(f"metaplastic: {where}: float images in 0..{high_x:g} scaled by 1/255 to [0, 1]",
                      file=sys.stderr)
                data = dataclasses.replace(data, x=x.astype(np.float32) * np.float32(1 / 255))
    return data


# ---------------------------------------------------------------- file cache

def cache_dir() -> pathlib.Path | None:
    """The user cache directory for prepared arrays, or None when disabled."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() in ("off", "0", "none", "false"):
        return None
    if value:
        return pathlib.Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "metaplastic"


def cache_key(*parts) -> str:
    """A short stable hash of JSON-able parts (names, sizes, versions, file stamps)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_stamp(path: str | os.PathLike) -> tuple[str, int, int]:
    """(path, size, mtime_ns): changes when the file is replaced."""
    stat = os.stat(path)
    return (str(path), stat.st_size, stat.st_mtime_ns)


def save_arrays(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically: a temporary file in the same folder, then a rename."""
    save_npz_atomic(path, arrays)


def cached_arrays(folder: str, key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """`build()` once per key, kept in <cache_dir>/<folder>/<key>.npz (no pickles).

    A missing, unreadable or disabled cache just means `build()` runs; a cache
    that cannot be written (read-only home) is skipped silently.
    """
    root = cache_dir()
    path = root / folder / f"{key}.npz" if root else None
    if path is not None and path.exists():
        try:
            return read_npz(path)
        except NpzError:
            pass  # truncated or foreign file: rebuild and overwrite
    arrays = build()
    if path is not None:
        try:
            save_arrays(path, arrays)
        except OSError:
            pass
    return arrays


def search_dirs(env_var: str, *defaults: str | os.PathLike) -> list[pathlib.Path]:
    """Folders from `env_var` (os.pathsep-separated) first, then `defaults`, deduplicated."""
    listed = [p for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    seen, out = set(), []
    for entry in [*listed, *defaults]:
        path = pathlib.Path(entry).expanduser()
        if path not in seen:
            seen.add(path)
            out.append(path)
    return out


def to_unit_float(x: np.ndarray) -> np.ndarray:
    """Images as float32 in [0, 1]: integer pixels are divided by 255."""
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) * np.float32(1 / 255)
    return x.astype(np.float32, copy=False)


def split_by_class(y: np.ndarray, test_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx): the last `test_per_class` examples of every class go to test."""
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y)
    rank = np.arange(len(y)) - np.repeat(np.cumsum(counts) - counts, counts)  # position within class
    in_test = np.empty(len(y), bool)
    in_test[order] = rank >= np.repeat(counts - test_per_class, counts)
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)
