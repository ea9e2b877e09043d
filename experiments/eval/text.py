"""Evaluation on real text available offline: APT's package descriptions as a bag of words,
accuracy vs unsupervised steps.

    metaplastic evaluate --config experiments/eval/text.py --workdir runs/eval_text \
        --config.rule_checkpoint=runs/quickstart

Like `imdb.py` (a rule meta-trained on images meets text, word columns in their own order), on
the package descriptions of any Debian/Ubuntu machine after `apt-get update` (the `apt_packages`
source; features from the `imdb_bow` source: counts of the 1,000 most frequent words of the
train split): `pair` = python vs perl packages (2 classes, as IMDB's sentiment), `sections` =
the 10 largest sections. When no APT lists are found the study stops with a one-line message
(set METAPLASTIC_APT_LISTS to a folder of *_Packages files). Variant `:quick` shrinks everything
for tests (a few dozen packages are enough); `:release` is the README's text table (5 seeds,
1 to 1,000 steps, pretrained:genome-glyphs-v1 beside hebbian and glyphs-v2).
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.eval.common import METHODS, release, shrink, study_config


def quick(config):
    """Shrunk for tests: 2 seeds, tiny networks, 200 unlabelled and 100 test packages."""
    shrink(config, steps=(1, 4), shots=(2,))
    for label in config.datasets:
        config.datasets[label].max_unlabelled = 200
        config.datasets[label].max_test = 100


def release_table(config):
    """The README's text table: 5 seeds, 1 to 1,000 steps, the release rules."""
    release(config, steps=(1, 10, 100, 1000))


def get_config(arg=None):
    config = study_config(
        "text", "Few-shot accuracy on APT package descriptions as bag-of-words features "
                "(real text, offline; a domain never meta-trained on).")
    config.methods = ml_collections.ConfigDict(METHODS)
    config.datasets = ml_collections.ConfigDict(dict(
        pair=dict(dataset="apt_pair_bow", max_unlabelled=10000, max_test=1000, permute_inputs=False,
                  required=True),
        sections=dict(dataset="apt_sections_bow", max_unlabelled=10000, max_test=1000, permute_inputs=False,
                      required=True),
    ))
    config.architectures = ((2, 64),)
    config.top_width = 32
    config.batch_size = 64
    config.steps = (1, 10, 100, 300, 1000)
    config.shots = (10,)
    config.main_shots = 10
    return apply_variant(config, arg, {"quick": quick, "release": release_table},
                         "experiments/eval/text.py")
