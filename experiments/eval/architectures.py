"""Evaluation over architectures (the paper's Figure 2, left): depth 1–11 at width 64 and
width 32–1024 at depth 2, on held-out sklearn digits 5–9.

    metaplastic evaluate --config experiments/eval/architectures.py --workdir runs/eval_arch \
        --config.rule_checkpoint=runs/quickstart

Depth counts the hidden layers below the 32-unit representation layer. The
large widths (to 10,000) are `eval_architectures_large.py`. Variant `:quick`
shrinks everything for tests; `:release` is the README's figure (MNIST 14×14, the recommended rule
beside hebbian and random init).
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.eval.common import METHODS, RECOMMENDED_RULE, shrink, study_config

DEPTHS = (1, 3, 5, 7, 9, 11)
WIDTHS = (32, 64, 128, 256, 512, 1024)


def quick(config):
    """Shrunk for tests: three tiny architectures, 2 seeds, 3 steps, digits 5–9."""
    shrink(config, architectures=((1, 8), (3, 8), (1, 24)), steps=(3,), shots=(2,))
    config.datasets.digits_5_9.max_test = 100


def release(config):
    """The README's figure (the paper's Figure 2, left) on held-out MNIST 14×14: the recommended rule
    (meta-trained at widths ≤ 64, depth ≤ 2) beside the hand-designed rule it started from and random
    init, depth 1–11 at width 64 and width 32–1,024 at depth 2, 100 and 1,000 steps, 5 seeds."""
    config.rule_checkpoint = RECOMMENDED_RULE
    config.methods = ml_collections.ConfigDict({k: METHODS[k] for k in ("learned", "hebbian", "random_init")})
    config.datasets = ml_collections.ConfigDict(dict(
        mnist_14=dict(dataset="mnist", alternatives=("mnist_5k",), image_size=14, max_unlabelled=10000,
                      max_test=1000, required=True)))
    config.architectures = tuple((d, 64) for d in DEPTHS) + tuple((2, w) for w in WIDTHS)  # (2, 64): the width
    config.seeds = 5                                                                  # it was trained at
    config.steps = (100, 1000)
    config.shots = (10,)
    config.main_shots = 10


def get_config(arg=None):
    config = study_config(
        "architectures", "Few-shot accuracy of base models of different depth and width.")
    config.methods = ml_collections.ConfigDict(METHODS)
    config.datasets = ml_collections.ConfigDict(dict(
        digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9), required=True)))
    config.architectures = tuple((d, 64) for d in DEPTHS) + tuple((2, w) for w in WIDTHS if w != 64)
    config.top_width = 32
    config.batch_size = 64
    config.steps = (500,)
    config.shots = (10,)
    return apply_variant(config, arg, {"quick": quick, "release": release},
                         "experiments/eval/architectures.py")
