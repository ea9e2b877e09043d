"""The `idx` source: MNIST-format files, other files refused, Debian's Fashion-MNIST found."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from metaplastic.core import data as core_data
from metaplastic.core.interfaces import DatasetUnavailable
from metaplastic.plugins.data_sources import idx as idx_source

from helpers.data_sources import isolated  # noqa: F401  (a fixture, used by name)

pytestmark = pytest.mark.usefixtures("isolated")


def write_idx(folder, prefix, images, labels, compress):
    folder.mkdir(parents=True, exist_ok=True)
    opener, suffix = (gzip.open, ".gz") if compress else (open, "")
    header = bytes([0, 0, 8, 3]) + np.asarray(images.shape, ">u4").tobytes()
    with opener(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as out:
        out.write(header + images.astype(np.uint8).tobytes())
    with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as out:
        out.write(bytes([0, 0, 8, 1]) + np.asarray([len(labels)], ">u4").tobytes()
                  + labels.astype(np.uint8).tobytes())


@pytest.mark.parametrize("compress", [True, False])
def test_idx_reads_mnist_format(isolated, compress):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (20, 6, 5)), np.arange(20) % 4
    write_idx(isolated / "idx" / "tiny-idx", "t10k", images, labels, compress)  # '-' alias of tiny_idx
    data = core_data.load_dataset("tiny_idx", "test")
    assert data.x.shape == (20, 6, 5, 1) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x[..., 0] * 255, images, atol=1e-3)
    assert data.y.tolist() == labels.tolist() and data.num_classes == 4 and data.source.startswith("idx:")
    with pytest.raises(DatasetUnavailable, match="no train-images/labels IDX files for 'tiny_idx'"):
        idx_source.IdxSource().load("tiny_idx", "train")


def test_idx_rejects_other_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        idx_source.read_idx(tmp_path / "bad")


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_idx_finds_debian_fashion_mnist():
    data = idx_source.IdxSource().load("fashion_mnist", "test")
    assert data.x.shape == (10000, 28, 28, 1) and np.bincount(data.y).tolist() == [1000] * 10
