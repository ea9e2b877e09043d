"""Evaluation over time: few-shot accuracy vs unsupervised steps (log scale), per method.

    metaplastic evaluate --config experiments/eval/time.py --workdir runs/eval_time \
        --config.rule_checkpoint=runs/quickstart

One run per (method, dataset, seed) to the largest step count, read out at each
snapshot. Held-out sklearn digits 5–9, and Fashion-MNIST 14×14 when installed.
Variant `:quick` shrinks everything for tests.
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.eval.common import METHODS, shrink, study_config


def quick(config):
    """Shrunk for tests: digits 5–9, 2 seeds, tiny networks, 1 and 4 steps."""
    shrink(config, steps=(1, 4), shots=(2,))
    config.datasets = ml_collections.ConfigDict(dict(
        digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9), required=True, max_test=100)))


def get_config(arg=None):
    config = study_config(
        "time", "Few-shot accuracy as unsupervised training proceeds.")
    config.methods = ml_collections.ConfigDict(METHODS)
    config.datasets = ml_collections.ConfigDict(dict(
        digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9), required=True),
        fashion_14=dict(dataset="fashion_mnist", image_size=14, max_unlabelled=10000, max_test=1000),
    ))
    config.architectures = ((2, 64),)
    config.top_width = 32
    config.batch_size = 64
    config.steps = (1, 3, 10, 30, 100, 300, 1000, 3000)
    config.shots = (10,)
    config.filters_dataset = "fashion_14"
    return apply_variant(config, arg, {"quick": quick}, "experiments/eval/time.py")
