"""Task families (image_classes, imdb_bow, mixture), the shared class-balanced sampler,
augmentation targets, and the architecture buckets / task groups the trainer uses."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import clear_data_caches

from metaplastic.core import data as core_data
from metaplastic.core.interfaces import Architecture, DatasetUnavailable
from metaplastic.core.tasks import ArchitectureSampler, Schedule, group_data, sample_group
from metaplastic.core import classification as _classification
from metaplastic.core import text as imdb_bow
from metaplastic.plugins.data_sources import glyphs
from metaplastic.plugins.task_families import image_classes
from metaplastic.core.ops.images import affine_warp
from metaplastic.plugins.task_families.image_classes import ImageClasses
from metaplastic.plugins.task_families.imdb_bow import ImdbBow
from metaplastic.plugins.task_families.mixture import Mixture

ARCH = Architecture(64, (32, 16))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    (tmp_path / "npz").mkdir()
    monkeypatch.setenv("METAPLASTIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("METAPLASTIC_NPZ_DIR", str(tmp_path / "npz"))
    monkeypatch.setenv("METAPLASTIC_GLYPH_FONTS", "bundled")
    monkeypatch.setattr(glyphs, "VARIANTS", {"train": 2, "test": 1})
    clear_data_caches()
    yield tmp_path
    clear_data_caches()


def key(i=0):
    return jax.random.key(i)


def tree_equal(a, b):
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


# ---------------------------------------------------------------- sampler

def test_distinct_draws_are_distinct_in_range_and_fall_back_to_replacement():
    rng = np.random.default_rng(0)
    sizes = np.asarray([20, 7, 3])
    draws = distinct = _classification.distinct_draws(rng, sizes, (50, 3), 6)
    assert draws.shape == (50, 3, 6)
    for c, size in enumerate(sizes):
        assert draws[:, c].min() >= 0 and draws[:, c].max() < size
    distinct = [len(set(row)) for row in draws[:, 0]] + [len(set(row)) for row in draws[:, 1]]
    assert min(distinct) == 6  # pools with >= 6 examples never repeat within a step
    assert len(np.unique(draws[:, 0])) == 20  # and every example gets used


def test_image_classes_batches_are_balanced_one_hot_and_deterministic():
    family = ImageClasses(datasets=("digits",), image_size=8, classes_per_task=4, examples_per_class=3)
    assert (family.input_dim, family.target_dim, family.labeled_batch_size) == (64, 10, 12)
    task = family.sample_task(key(1), ARCH)
    assert task == family.sample_task(key(1), ARCH) and task != family.sample_task(key(2), ARCH)
    classes = dict(task.details)["classes"]
    assert len(classes) == 4 and list(classes) == sorted(classes)
    data = family.truncation_data(task, key(3), 5, 16)
    assert data.unlabelled.shape == (5, 16, 64) and data.meta_a.x.shape == (5, 12, 64)
    assert data.meta_b.y.shape == (5, 12, 10) and data.unlabelled.dtype == np.float32
    for batch in (data.meta_a, data.meta_b):
        assert np.all(batch.y.sum(-1) == 1) and np.all(batch.y[..., 4:] == 0)
        assert np.all(batch.y.sum(1)[:, :4] == 3)  # 3 per class in every step
    assert tree_equal(data, family.truncation_data(task, key(3), 5, 16))
    assert not np.array_equal(data.unlabelled, family.truncation_data(task, key(4), 5, 16).unlabelled)


def test_meta_batches_hold_the_right_classes_and_a_fixed_permutation():
    plain = ImageClasses(datasets=("digits",), permute_inputs=False, classes=(1, 3, 5, 7), classes_per_task=2)
    shuffled = ImageClasses(datasets=("digits",), permute_inputs=True, classes=(1, 3, 5, 7), classes_per_task=2)
    task = plain.sample_task(key(5), ARCH)
    assert set(dict(task.details)["classes"]) <= {1, 3, 5, 7}
    a = plain.truncation_data(task, key(6), 2, 4)
    b = shuffled.truncation_data(task, key(6), 2, 4)
    perm = shuffled.permutation(task, 64)
    np.testing.assert_array_equal(b.meta_a.x, a.meta_a.x[..., perm])
    # every row of A is an image of its labelled class (A and B drawn from the real labels)
    x, y, _ = image_classes.prepared_images("digits", "train", 0, True)
    lookup = {row.tobytes(): label for row, label in zip(x, y)}
    classes = dict(task.details)["classes"]
    for row, target in zip(a.meta_a.x.reshape(-1, 64), a.meta_a.y.reshape(-1, 10)):
        assert lookup[row.tobytes()] == classes[int(target.argmax())]
    # A and B are disjoint within each step
    for step in range(2):
        rows_a = {r.tobytes() for r in a.meta_a.x[step]}
        assert not rows_a & {r.tobytes() for r in a.meta_b.x[step]}


def test_resize_colour_and_mixed_datasets(isolated):
    rng = np.random.default_rng(0)
    np.savez(isolated / "npz" / "colour.npz", x_train=rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8),
             y_train=np.arange(40) % 10)
    gray = ImageClasses(datasets=("digits", "colour"), image_size=6, weights=(1.0, 3.0))
    assert gray.input_dim == 36
    colour = ImageClasses(datasets=("digits", "colour"), image_size=6, grayscale=False)
    assert colour.input_dim == 108 and colour.image_shape("digits") == (6, 6, 3)
    picks = [colour.sample_task(key(i), ARCH).dataset for i in range(40)]
    assert set(picks) == {"digits", "colour"}
    mostly = [gray.sample_task(key(i), ARCH).dataset for i in range(200)]
    assert 0.6 < mostly.count("colour") / 200 < 0.9


def test_glyph_tasks_at_16x16():
    family = ImageClasses(datasets=("glyphs",), image_size=16, classes_per_task=10)
    assert family.input_dim == 256
    data = family.truncation_data(family.sample_task(key(0), ARCH), key(1), 2, 8)
    assert data.meta_a.x.shape == (2, 100, 256)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="classes_per_task=12 exceeds"):
        ImageClasses(datasets=("digits",), classes_per_task=12)
    with pytest.raises(ValueError, match="task_family_config.datasets: input sizes differ"):
        ImageClasses(datasets=("digits", "mnist_5k"))
    with pytest.raises(ValueError, match="task_family_config.classes_per_task: datasets give different"):
        ImageClasses(datasets=("digits", "glyphs"), image_size=8, max_classes=62)
    with pytest.raises(ValueError, match="task_family_config.weights"):
        ImageClasses(datasets=("digits",), weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="task_family_config.max_rotation"):
        ImageClasses(datasets=("digits",), max_rotation=-1.0)
    with pytest.raises(DatasetUnavailable, match="dataset 'nonesuch' split 'train' is unavailable"):
        ImageClasses(datasets=("nonesuch",))


# ---------------------------------------------------------------- augmentation

def test_affine_warp_identity_shift_and_rotation():
    image = np.zeros((1, 7, 7, 1), np.float32)
    image[0, 3, 4] = 1.0
    same = affine_warp(image, np.zeros(1), np.zeros((1, 2)))
    np.testing.assert_allclose(same, image, atol=1e-6)
    moved = affine_warp(image, np.zeros(1), np.asarray([[1.0, -2.0]]))
    assert moved[0, 4, 2, 0] == pytest.approx(1.0)
    turned = affine_warp(image, np.asarray([np.pi / 2]), np.zeros((1, 2)))
    assert turned.sum() == pytest.approx(1.0, abs=1e-5) and turned[0, 3, 4, 0] < 0.5


def test_numpy_resize_matches_jax_antialiased_linear():
    from metaplastic.core.ops.images import resize_images

    x = np.random.default_rng(0).random((3, 28, 28, 2), dtype=np.float32)
    for size in (16, 14, 40):
        expected = jax.image.resize(x, (3, size, size, 2), "linear", antialias=True)
        np.testing.assert_allclose(resize_images(x, size), expected, atol=1e-5)


def test_augmentation_appends_regression_targets_and_is_off_by_default():
    assert ImageClasses(datasets=("digits",)).target_dim == 10
    family = ImageClasses(datasets=("digits",), max_shift=0.2, max_rotation=20.0, max_noise=0.3)
    assert family.regression_targets == ("shift_down", "shift_right", "rotation", "noise")
    assert family.target_dim == 14
    data = family.truncation_data(family.sample_task(key(0), ARCH), key(1), 3, 8)
    extra = data.meta_a.y[..., 10:]
    assert extra.shape == (3, 100, 4)
    assert np.abs(extra[..., :3]).max() <= 1 and 0 <= extra[..., 3].min() and extra[..., 3].max() <= 1
    assert extra.std() > 0.1
    assert np.all(data.meta_a.y[..., :10].sum(-1) == 1)
    silent = ImageClasses(datasets=("digits",), max_shift=0.2, augment_targets=False)
    assert silent.target_dim == 10
    assert silent.truncation_data(silent.sample_task(key(0), ARCH), key(1), 1, 4).meta_a.y.shape[-1] == 10
    rotate_only = ImageClasses(datasets=("digits",), max_rotation=10.0)
    assert rotate_only.regression_targets == ("rotation",) and rotate_only.target_dim == 11


# ---------------------------------------------------------------- IMDB bag of words

POSITIVE = "great wonderful superb moving brilliant".split()
NEGATIVE = "awful boring terrible dull waste".split()
NEUTRAL = "film movie plot actor scene story director music".split()


def write_corpus(folder, n=60):
    rng = np.random.default_rng(0)

    def review(label):
        words = list(rng.choice(NEUTRAL, 6)) + list(rng.choice(POSITIVE if label else NEGATIVE, 3))
        return " ".join(words) + " <br /><br />the end"

    y = np.arange(n) % 2
    np.savez(folder / "imdb_reviews.npz", x_train=np.asarray([review(v) for v in y]), y_train=y,
             x_test=np.asarray([review(v) for v in y[:20]]), y_test=y[:20])


@pytest.mark.parametrize("mode", ["counts", "binary", "log_counts"])
def test_imdb_bow_modes(isolated, mode):
    write_corpus(isolated / "npz")
    family = ImdbBow(vocab_size=12, mode=mode, examples_per_class=4)
    assert family.input_dim == 12 and family.target_dim == 2 and "br" not in family.vocabulary
    task = family.sample_task(key(0), Architecture(12, (8,)))
    data = family.truncation_data(task, key(1), 3, 5)
    assert data.unlabelled.shape == (3, 5, 12) and data.meta_b.x.shape == (3, 8, 12)
    assert np.all(data.meta_a.y.sum(1) == 4)
    values = np.unique(data.unlabelled)
    if mode == "binary":
        assert set(values) <= {0.0, 1.0}
    elif mode == "counts":
        assert values.max() >= 2 and np.all(values == np.round(values))
    else:
        assert np.any((values > 0) & (values != np.round(values)))


def test_imdb_vocabulary_comes_from_the_training_split(isolated):
    write_corpus(isolated / "npz")
    family = ImdbBow(split="test", vocab_size=1000, mode="binary")
    assert family.input_dim == len(family.vocabulary) == len(set(POSITIVE + NEGATIVE + NEUTRAL + ["the", "end"]))
    assert family.vocabulary[:2] == ("end", "the")  # most frequent first, ties alphabetical
    with pytest.raises(ValueError, match="mode: 'tfidf' is not one of"):
        ImdbBow(mode="tfidf")
    with pytest.raises(ValueError, match="not a text dataset"):
        ImdbBow(dataset="digits")


def test_imdb_bow_is_also_a_feature_data_source(isolated):
    with pytest.raises(DatasetUnavailable, match="imdb_bow: needs the text dataset: dataset 'imdb_reviews'"):
        core_data.load_dataset("imdb_bow", "train")
    core_data.load_dataset.cache_clear()
    write_corpus(isolated / "npz")
    train = core_data.load_dataset("imdb_bow_binary", "train")
    test = core_data.load_dataset("imdb_bow", "test")
    vocab = imdb_bow.vocabulary("imdb_reviews", "train", 1000, "")
    assert train.x.shape == (60, len(vocab)) and test.x.shape == (20, len(vocab))
    assert train.num_classes == 2 and set(np.unique(train.x)) <= {0.0, 1.0} and test.x.max() >= 2
    assert train.x.dtype == np.float32


# ---------------------------------------------------------------- mixture

def small(dataset, **extra):
    return {"datasets": (dataset,), "image_size": 8, "classes_per_task": 5, "examples_per_class": 2, **extra}


def test_mixture_weights_determinism_and_group_stacking():
    mixture = Mixture(members=(("image_classes", small("digits"), 1.0),
                               ("image_classes", small("glyphs"), 3.0)))
    assert (mixture.input_dim, mixture.target_dim) == (64, 10)
    tasks = [mixture.sample_task(key(i), ARCH) for i in range(200)]
    share = sum(t.dataset == "glyphs" for t in tasks) / len(tasks)
    assert 0.65 < share < 0.85
    assert mixture.sample_task(key(7), ARCH) == tasks[7]
    group = sample_group(mixture, ArchitectureSampler(), Schedule(truncation_lengths=(3,)), key(9), 6)
    assert group == sample_group(mixture, ArchitectureSampler(), Schedule(truncation_lengths=(3,)), key(9), 6)
    data = group_data(mixture, group, key(10), 4)
    assert data.unlabelled.shape == (6, 3, 4, 64) and data.meta_a.y.shape == (6, 3, 10, 10)
    assert tree_equal(data, group_data(mixture, group, key(10), 4))
    assert hash(mixture) == hash(Mixture(members=mixture.members))


def test_mixture_accepts_pair_configs_and_nests():
    pairs = tuple(sorted(small("digits").items()))
    inner = (("image_classes", pairs, 1.0),)
    outer = Mixture(members=(("mixture", {"members": inner}, 1.0), ("image_classes", small("glyphs"), 1.0)))
    task = outer.sample_task(key(3), ARCH)
    assert outer.truncation_data(task, key(4), 1, 2).meta_a.x.shape == (1, 10, 64)


def test_mixture_rejects_members_that_cannot_stack():
    with pytest.raises(ValueError, match="dimensions differ"):
        Mixture(members=(("image_classes", small("digits"), 1.0),
                         ("image_classes", small("glyphs", image_size=6), 1.0)))
    with pytest.raises(ValueError, match="meta batch sizes differ"):
        Mixture(members=(("image_classes", small("digits"), 1.0),
                         ("image_classes", small("glyphs", classes_per_task=4), 1.0)))
    with pytest.raises(ValueError, match=r"members\[0\] \('image_classes'\): .*classes_per_task=11"):
        Mixture(members=(("image_classes", small("digits", classes_per_task=11), 1.0),))
    with pytest.raises(ValueError, match="at least one member"):
        Mixture(members=())


# ---------------------------------------------------------------- architectures

def test_architecture_buckets():
    paper = ArchitectureSampler.paper()
    buckets = paper.buckets(256)
    assert len(buckets) == 16 == len(set(buckets))
    assert {len(a.widths) - 1 for a in buckets} == {2, 3, 4, 5}
    assert {a.widths[0] for a in buckets} == {64, 128, 256, 512}
    assert all(a.widths[-1] == 32 for a in buckets)
    ranged = ArchitectureSampler.from_ranges((1, 2), (64, 256), 3)
    assert ranged.depths == (1, 2) and ranged.widths == (64, 128, 256) and len(ranged.buckets(10)) == 6
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert [paper.sample(rng_a, 9) for _ in range(5)] == [paper.sample(rng_b, 9) for _ in range(5)]
    with pytest.raises(ValueError, match="architecture"):
        ArchitectureSampler.from_ranges((3, 2))
