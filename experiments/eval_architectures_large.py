"""Evaluation over architectures, the large end: widths 2,048–10,000 at depth 2 on digits 5–9.

    metaplastic evaluate --config experiments/eval_architectures_large.py --workdir runs/eval_arch_large \
        --config.rule_checkpoint=runs/quickstart

Fewer seeds and steps than eval_architectures.py: a 10,000-unit layer makes
every step of every method far slower on a CPU. Variant `:quick` for tests.
"""

import ml_collections

from metaplastic.experiments import eval_architectures


def get_config(arg=None):
    config = eval_architectures.get_config(arg)
    config.name = "architectures_large"
    if arg == "quick":
        config.architectures = ((1, 64),)
        return config
    config.seeds = 3
    config.steps = (200,)
    config.architectures = ((2, 2048), (2, 4096), (2, 10000))
    return config
