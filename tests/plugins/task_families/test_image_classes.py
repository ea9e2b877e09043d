"""The `image_classes` task family: balanced one-hot batches, meta-batches of the right classes,
resized, colour and mixed datasets, glyph tasks, config errors, augmentation targets."""

from __future__ import annotations

import numpy as np
import pytest

from metaplastic.core.interfaces import DatasetUnavailable
from metaplastic.plugins.data_sources import glyphs
from metaplastic.plugins.task_families import image_classes
from metaplastic.plugins.task_families.image_classes import ImageClasses

from helpers.task_families import ARCH, isolated, key, tree_equal


@pytest.mark.usefixtures("isolated")
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


@pytest.mark.usefixtures("isolated")
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


@pytest.mark.usefixtures("isolated")
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


@pytest.mark.usefixtures("isolated")
def test_glyph_tasks_at_16x16():
    family = ImageClasses(datasets=("glyphs",), image_size=16, classes_per_task=10)
    assert family.input_dim == 256
    data = family.truncation_data(family.sample_task(key(0), ARCH), key(1), 2, 8)
    assert data.meta_a.x.shape == (2, 100, 256)


@pytest.mark.usefixtures("isolated")
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


@pytest.mark.usefixtures("isolated")
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
