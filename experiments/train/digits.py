"""The defaults as they are: the simple local rule meta-trained by truncated gradients on scikit-learn's
8×8 digits 0–4. Small and fast, the base config of tests and benchmarks; digits 5–9 stay unseen.
    metaplastic train --config experiments/train/digits.py --workdir runs/digits
Variant `:tiny` shrinks everything for tests. The README's main job is `quickstart.py`.
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.train import default


def tiny(config):
    """Everything shrunk for tests: 6 θ-steps of 2 tasks on a 16-unit network, horizons of 4 steps."""
    config.num_steps = 6
    config.tasks_per_step = 2
    config.batch_size = 16
    config.architecture = ml_collections.ConfigDict(dict(depths=(1,), widths=(16,), top_width=8))
    config.schedule.truncation_lengths = (2,)
    config.schedule.horizon = (4, 4)
    config.checkpoint_every = 2


def get_config(arg=None):
    return apply_variant(default.get_config(), arg, {"tiny": tiny}, "experiments/train/digits.py")
