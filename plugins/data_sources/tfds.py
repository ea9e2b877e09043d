"""`tfds`: datasets prepared with TensorFlow Datasets, read without TensorFlow.

Reading uses `tfds.data_source` (random access to ArrayRecord files), so only
`tensorflow-datasets` and `array_record` are needed at run time, and nothing is
downloaded (download=False). Preparing the files needs TensorFlow and internet
once, anywhere:

    pip install tensorflow tensorflow-datasets
    tfds build mnist --data_dir=/path/to/tfds --file_format=array_record

then copy the folder and point METAPLASTIC_TFDS_DATA_DIR (or TFDS_DATA_DIR) at
it; the default is TFDS's (~/tensorflow_datasets).

Any labelled TFDS image or text dataset works by its TFDS name (with config:
`imagenet_resized/16x16`) and any TFDS split string (`train[:10%]`). Aliases:
imagenet16 / imagenet32 / imagenet64 = imagenet_resized/16x16 / 32x32 / 64x64
(downsampled ImageNet with its 1,000 class labels; TFDS's `downsampled_imagenet`
has no labels, so it cannot make classification tasks). Omniglot is turned into
one channel with bright strokes on black, like MNIST. Decoded images are cached
as uint8 under <cache_dir>/tfds so a split is decoded once.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from metaplastic.core.data import cache_key, cached_arrays, file_stamp, to_unit_float
from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.registries import hookimpl

DATA_DIR_ENVS = ("METAPLASTIC_TFDS_DATA_DIR", "TFDS_DATA_DIR")
ALIASES = {
    "imagenet16": "imagenet_resized/16x16",
    "imagenet32": "imagenet_resized/32x32",
    "imagenet64": "imagenet_resized/64x64",
}
UNLABELLED = {
    "downsampled_imagenet": "TFDS 'downsampled_imagenet' has no labels; use 'imagenet_resized/16x16' "
                            "(alias imagenet16) or 'imagenet_resized/32x32' (imagenet32)",
}
INVERT_GRAY = ("omniglot",)  # dark strokes on white, stored as 3 equal channels
READ_CHUNK = 4096


def tfds_data_dir(explicit: str = "") -> str | None:
    """The data_dir to read: explicit, then $METAPLASTIC_TFDS_DATA_DIR, $TFDS_DATA_DIR, TFDS's default."""
    for value in (explicit, *(os.environ.get(env, "") for env in DATA_DIR_ENVS)):
        if value:
            return os.path.expanduser(value)
    return None


def _read_all(source, keys: tuple[str, ...]) -> dict[str, list]:
    """Every example of a tfds data source, in order, as lists per key."""
    out = {key: [] for key in keys}
    total = len(source)
    for start in range(0, total, READ_CHUNK):
        ids = list(range(start, min(total, start + READ_CHUNK)))
        try:
            examples = source.__getitems__(ids)  # batched ArrayRecord reads
        except TypeError:  # tfds.testing.mock_data's __getitems__ mock is unbound (tfds 4.9.x)
            examples = [source[i] for i in ids]
        for example in examples:
            for key in keys:
                out[key].append(example[key])
    return out


@functools.cache
def _builder_names() -> tuple[str, ...]:
    """TFDS's registered dataset names (no download); () without tensorflow-datasets."""
    try:
        import tensorflow_datasets as tfds

        return tuple(tfds.list_builders(with_community_datasets=False))
    except Exception:  # noqa: BLE001 - only suggestions depend on it
        return ()


def _build_command(name: str, data_dir: str | None) -> str:
    where = data_dir or "~/tensorflow_datasets"
    return (f"prepare it where TensorFlow is installed: `tfds build {name} --data_dir={where} "
            f"--file_format=array_record` (or set METAPLASTIC_TFDS_DATA_DIR to a folder that has it)")


@dataclasses.dataclass(frozen=True)
class TfdsSource(DataSource):
    data_dir: str = documented("", '"" = $METAPLASTIC_TFDS_DATA_DIR, $TFDS_DATA_DIR, or ~/tensorflow_datasets')

    def names(self) -> tuple[str, ...]:
        return (*ALIASES, *_builder_names())

    def load(self, dataset: str, split: str) -> Dataset:
        name = ALIASES.get(dataset, dataset)
        if name.split("/")[0] in UNLABELLED:
            raise DatasetUnavailable(UNLABELLED[name.split("/")[0]])
        try:
            import tensorflow_datasets as tfds
        except ImportError:
            raise DatasetUnavailable("tensorflow-datasets is not installed; "
                                     "`pip install tensorflow-datasets array_record`") from None
        data_dir = tfds_data_dir(self.data_dir)
        try:  # a registered builder, or files prepared elsewhere (read from dataset_info.json)
            source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except tfds.core.registered.DatasetNotFoundError:
            raise DatasetUnavailable(f"'{name}' is neither a TFDS dataset name nor prepared in "
                                     f"{data_dir or '~/tensorflow_datasets'}") from None
        except Exception as error:  # not prepared, prepared as TFRecord, unknown split, ...
            raise DatasetUnavailable(self._why(name, split, data_dir, error)) from None
        info = source.dataset_info
        features = info.features
        label = next((k for k, f in features.items()
                      if k in ("label", "labels") and isinstance(f, tfds.features.ClassLabel)), None)
        image = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
        if image is None:  # an image stored as a plain uint8 tensor [H, W] or [H, W, C]
            image = next((k for k, f in features.items() if isinstance(f, tfds.features.Tensor)
                          and len(f.shape) in (2, 3) and np.dtype(f.np_dtype) == np.uint8), None)
        text = next((k for k, f in features.items() if isinstance(f, tfds.features.Text)), None)
        if label is None or (image is None and text is None):
            raise DatasetUnavailable(f"TFDS '{name}' has no class label with an image or text feature")
        num_classes = features[label].num_classes
        origin = f"tfds:{info.data_dir}"

        if image is None:  # text: strings, not cached (reading is fast; decoding is the slow part of images)
            columns = _read_all(source, (text, label))
            x = np.array([t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in columns[text]],
                         dtype=object)
            return Dataset(dataset, x, np.asarray(columns[label], np.int32), num_classes, source=origin)

        def decode():
            columns = _read_all(source, (image, label))
            return {"x": np.stack(columns[image]).astype(np.uint8),
                    "y": np.asarray(columns[label], np.int32)}

        info_file = os.path.join(str(info.data_dir), "dataset_info.json")
        if os.path.isfile(info_file):  # real prepared data (a mock has no files): cache the decoded split
            arrays = cached_arrays("tfds", cache_key(info.full_name, split, file_stamp(info_file)), decode)
        else:
            arrays = decode()
        x = arrays["x"]
        if x.ndim == 3:
            x = x[..., None]
        if name.split("/")[0] in INVERT_GRAY:
            x = 255 - x[..., :1]
        return Dataset(dataset, to_unit_float(x), arrays["y"], num_classes, source=origin)

    @staticmethod
    def _why(name: str, split: str, data_dir: str | None, error: Exception) -> str:
        text = str(error)
        if "TFRECORD" in text and "already prepared" in text and os.path.isdir(
                os.path.join(data_dir or os.path.expanduser("~/tensorflow_datasets"), name.split("/")[0])):
            return (f"'{name}' is prepared as TFRecord, which needs TensorFlow to read; "
                    + _build_command(name, data_dir))
        if ("TFRECORD" in text or "not been generated" in text
                or isinstance(error, (FileNotFoundError, AssertionError))):
            return f"'{name}' is not prepared in {data_dir or '~/tensorflow_datasets'}; " + _build_command(name, data_dir)
        if "split" in text.lower():
            return f"'{name}' has no split '{split}' ({text.splitlines()[0]})"
        return f"'{name}' could not be read ({type(error).__name__}: {text.splitlines()[0] if text else ''})"


@hookimpl
def metaplastic_data_sources():
    return {"tfds": TfdsSource}
