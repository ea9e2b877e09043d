"""The `tfds` source: mock data and a real ArrayRecord build (no TensorFlow), and the how-to when a
dataset is not prepared."""

from __future__ import annotations

import os

import numpy as np
import pytest

from metaplastic.core import data as core_data
from metaplastic.core.interfaces import DatasetUnavailable
from metaplastic.plugins.data_sources import glyphs

from helpers.data_sources import isolated  # noqa: F401  (a fixture, used by name)

pytestmark = pytest.mark.usefixtures("isolated")
TFDS_CASES = [  # (our name, shape of one x, classes)
    ("mnist", (28, 28, 1), 10),
    ("fashion_mnist", (28, 28, 1), 10),
    ("cifar10", (32, 32, 3), 10),
    ("omniglot", (105, 105, 1), 1623),
    ("imagenet16", (16, 16, 3), 1000),
    ("imagenet_resized/32x32", (32, 32, 3), 1000),
    ("imdb_reviews", (), 2),
]


def test_tfds_mock_data_without_tensorflow():
    tfds = pytest.importorskip("tensorflow_datasets")
    from metaplastic.plugins.data_sources.tfds import TfdsSource

    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        for name, shape, classes in TFDS_CASES:
            data = core_data.load_dataset(name, "train", source="tfds")
            assert data.x.shape == (12, *shape) and data.num_classes == classes, name
            assert data.y.dtype == np.int32 and data.y.max() < classes, name
            if shape:
                assert data.x.dtype == np.float32 and 0 <= data.x.min() and data.x.max() <= 1, name
            else:
                assert data.x.dtype == object and isinstance(data.x[0], str)
        omniglot = TfdsSource().load("omniglot", "train")
        assert omniglot.x.shape[-1] == 1  # one channel, strokes bright


def test_tfds_missing_dataset_says_how_to_prepare(isolated):
    pytest.importorskip("tensorflow_datasets")
    from metaplastic.plugins.data_sources.tfds import TfdsSource

    with pytest.raises(DatasetUnavailable) as missing:
        TfdsSource().load("cifar10", "train")
    assert "tfds build cifar10" in str(missing.value) and str(isolated / "tfds") in str(missing.value)
    assert "file_format=array_record" in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(DatasetUnavailable, match="no labels; use 'imagenet_resized/16x16'"):
        TfdsSource().load("downsampled_imagenet/32x32", "train")
    with pytest.raises(DatasetUnavailable, match="neither a TFDS dataset name"):
        TfdsSource().load("glyphs", "train")


def test_tfds_reads_real_array_record_files_and_caches(isolated):
    """A dataset prepared for real (ArrayRecord, uint8 tensor images: no TensorFlow needed to build)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")
    from metaplastic.plugins.data_sources.tfds import TfdsSource

    class MetaplasticTinyImages(tfds.core.GeneratorBasedBuilder):
        # a one-part module name keeps TFDS's code_path lookup away from the optional
        # `importlib_resources` backport, which this environment does not have
        __module__ = "metaplastic_test_builder"
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(6, 6, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=3)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(9)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"image": np.full((6, 6, 1), 20 * i, np.uint8), "label": i % 3}

    data_dir = str(isolated / "tfds")
    MetaplasticTinyImages(data_dir=data_dir, file_format="array_record").download_and_prepare()
    first = TfdsSource().load("metaplastic_tiny_images", "train")
    assert first.x.shape == (9, 6, 6, 1) and first.num_classes == 3
    # labels match pixel values whatever order TFDS shuffled the records into
    assert np.array_equal(np.rint(first.x[:, 0, 0, 0] * 255 / 20).astype(int) % 3, first.y)
    assert len(os.listdir(isolated / "cache" / "tfds")) == 1
    again = TfdsSource().load("metaplastic_tiny_images", "train[:4]")
    assert again.x.shape == (4, 6, 6, 1)
