"""The `mixture` task family: weights, determinism, group stacking, nested pair configs, members that cannot stack."""

from __future__ import annotations

import pytest

from metaplastic.core.tasks import ArchitectureSampler, Schedule, group_data, sample_group
from metaplastic.plugins.data_sources import glyphs
from metaplastic.plugins.task_families import image_classes
from metaplastic.plugins.task_families.mixture import Mixture

from helpers.task_families import ARCH, isolated, key, tree_equal


def small(dataset, **extra):
    return {"datasets": (dataset,), "image_size": 8, "classes_per_task": 5, "examples_per_class": 2, **extra}


@pytest.mark.usefixtures("isolated")
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


@pytest.mark.usefixtures("isolated")
def test_mixture_accepts_pair_configs_and_nests():
    pairs = tuple(sorted(small("digits").items()))
    inner = (("image_classes", pairs, 1.0),)
    outer = Mixture(members=(("mixture", {"members": inner}, 1.0), ("image_classes", small("glyphs"), 1.0)))
    task = outer.sample_task(key(3), ARCH)
    assert outer.truncation_data(task, key(4), 1, 2).meta_a.x.shape == (1, 10, 64)


@pytest.mark.usefixtures("isolated")
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
