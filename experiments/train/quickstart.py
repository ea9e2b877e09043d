"""Quickstart: meta-learning adds to a hand-designed rule, offline, in a few minutes on 2 CPU cores.

The paper's rule (`metz2019`) starts at the hand-designed competitive Hebbian rule (`prior="hebbian"`,
its networks off), and CMA-ES meta-trains its genome (step sizes, schedules, mix weights: 19 numbers)
on whole inner runs of glyph letters A–Z rendered from the fonts that ship with matplotlib (the same
data on every machine). Validation uses other classes and images (letters a–z, the test split);
evaluation datasets (digits, MNIST, Fashion-MNIST) are never seen. At the end `train` prints the
held-out validation score of the best θ beside its start (the hand-designed rule) and random init,
and the command that evaluates it on held-out datasets.
    metaplastic train --config experiments/train/quickstart.py --workdir runs/quickstart
Variant `:tiny` shrinks everything for tests.
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.train import default

LETTER_CLASSES = tuple(range(10, 36))       # A–Z: meta-training classes
VALIDATION_CLASSES = tuple(range(36, 62))   # a–z: validation classes (held-out classes and images)


def tiny(config):
    """Everything shrunk for tests: 3 generations of 2 tasks, a population of 4, 8-unit networks."""
    config.num_steps = 3
    config.tasks_per_step = 2
    config.batch_size = 8
    config.genome_strategy_config.population_size = 4
    config.genome.objective_points = (2, 4)
    config.architecture = ml_collections.ConfigDict(dict(depths=(1,), widths=(8,), top_width=8))
    config.validation.update(every=1, points=(2, 4), num_tasks=2, widths=(8,))
    config.checkpoint_every = 1


def get_config(arg=None):
    config = default.get_config()
    config.trainer = "genome"
    config.update_rule = "metz2019"
    config.update_rule_config = ml_collections.ConfigDict(dict(prior="hebbian", nets=False))
    config.genome_strategy = "cma_es"
    config.genome_strategy_config = ml_collections.ConfigDict(dict(population_size=16, std_init=0.1))
    config.genome.objective_points = (10, 30, 100, 300)
    config.num_steps = 20                      # generations
    config.tasks_per_step = 8
    config.batch_size = 32
    config.task_family_config = ml_collections.ConfigDict(dict(
        datasets=("glyphs",), split="train", classes=LETTER_CLASSES, classes_per_task=10, image_size=10,
        examples_per_class=10, max_classes=10))
    config.data_sources = ml_collections.ConfigDict(dict(glyphs=dict(fonts="bundled")))  # same data everywhere
    config.architecture = ml_collections.ConfigDict(dict(depths=(1, 2), widths=(32, 64), top_width=32))
    config.checkpoint_every = 5
    config.validation.update(every=5, points=(100, 300), num_tasks=4, depths=(1,), widths=(64,), seed=1)
    config.validation.task_family_config = ml_collections.ConfigDict(dict(split="test",
                                                                         classes=VALIDATION_CLASSES))
    return apply_variant(config, arg, {"tiny": tiny}, "experiments/train/quickstart.py")
