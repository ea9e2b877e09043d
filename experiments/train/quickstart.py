"""Quickstart: meta-train the simple local rule on scikit-learn's 8×8 digits 0–4 (the defaults).

Runs offline in a few minutes on 2 CPU cores. Digits 5–9 stay unseen for evaluation.
    metaplastic train --config experiments/train/quickstart.py --workdir runs/quickstart
Variant `:tiny` shrinks everything for tests.
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.train import default


def tiny(config):
    config.num_steps = 6
    config.tasks_per_step = 2
    config.batch_size = 16
    config.architecture = ml_collections.ConfigDict(dict(depths=(1,), widths=(16,), top_width=8))
    config.schedule.truncation_lengths = (2,)
    config.schedule.horizon = (4, 4)
    config.checkpoint_every = 2


def get_config(arg=None):
    return apply_variant(default.get_config(), arg, {"tiny": tiny}, "experiments/train/quickstart.py")
