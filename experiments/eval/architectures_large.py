"""Evaluation over architectures, the large end: widths 2,048–10,000 at depth 2 on digits 5–9.

    metaplastic evaluate --config experiments/eval/architectures_large.py --workdir runs/eval_arch_large \
        --config.rule_checkpoint=runs/quickstart

Fewer seeds and steps than architectures.py: a 10,000-unit layer makes
every step of every method far slower on a CPU. Variant `:quick` for tests; `:release` the README
figure's 4,096 and 10,000 units on MNIST 14×14.
"""

from metaplastic.core.config import apply_variant
from metaplastic.experiments.eval import architectures


def quick(config):
    """Shrunk for tests: `architectures.py:quick` at one 64-unit layer."""
    architectures.quick(config)
    config.architectures = ((1, 64),)


def release(config):
    """The README figure's large widths: 4,096 and 10,000 units at depth 2 on MNIST 14×14, 3 seeds, at 100
    inner steps (what a CPU affords: a 10,000-unit layer makes every step far slower)."""
    architectures.release(config)
    config.seeds = 3
    config.steps = (100,)
    config.architectures = ((2, 4096), (2, 10000))


def get_config(arg=None):
    config = apply_variant(architectures.get_config(), arg, {"quick": quick, "release": release},
                           "experiments/eval/architectures_large.py")
    config.name = "architectures_large"
    if not arg:
        config.seeds = 3
        config.steps = (200,)
        config.architectures = ((2, 2048), (2, 4096), (2, 10000))
    return config
