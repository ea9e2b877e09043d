"""Evaluation over domains: IMDB reviews as a bag of words, accuracy vs unsupervised steps.

    metaplastic evaluate --config experiments/eval/imdb.py --workdir runs/eval_imdb \
        --config.rule_checkpoint=runs/quickstart

A rule meta-trained on images meets text. The dataset comes from the `imdb_bow`
data source (inputs [N, D] word features, 2 classes); point
`--config.datasets.imdb.dataset=NAME` elsewhere if it is named differently.
When no IMDB data is installed the study stops with a one-line message.
Variant `:quick` shrinks everything for tests.
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.eval.common import METHODS, shrink, study_config


def quick(config):
    """Shrunk for tests: 2 seeds, tiny networks, 1 and 4 steps, 100 test reviews."""
    shrink(config, steps=(1, 4), shots=(2,))
    config.datasets.imdb.max_test = 100


def get_config(arg=None):
    config = study_config(
        "imdb", "Few-shot sentiment accuracy on IMDB bag-of-words features (a domain never meta-trained on).")
    config.methods = ml_collections.ConfigDict(METHODS)
    config.datasets = ml_collections.ConfigDict(dict(
        imdb=dict(dataset="imdb_bow", alternatives=("imdb",), max_unlabelled=10000, max_test=1000,
                  permute_inputs=False, required=True),
    ))
    config.architectures = ((2, 64),)
    config.top_width = 32
    config.batch_size = 64
    config.steps = (1, 10, 100, 300, 1000)
    config.shots = (10, 50)
    config.main_shots = 10
    return apply_variant(config, arg, {"quick": quick}, "experiments/eval/imdb.py")
