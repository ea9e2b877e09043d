"""Meta-train on rendered glyphs only (offline; the paper's "Alphabet" data), for held-out evaluation.

Digits, MNIST and Fashion-MNIST stay unseen. Horizons reach 3,000 inner steps so
the rule is trained for as long as it is evaluated. The recipe is the recipe study's winner
at its budget (docs/recipes.md): independent task phases, NRES over the whole horizon, and
horizons up to 3,000 (at 1,000 inner steps +18 to +24 points on held-out data over horizons up to 1,000).
    metaplastic train --config experiments/train/glyphs.py --workdir runs/glyphs
Variants:
  :metz2019    the paper's rule instead of the simple local rule (lockstep, truncated backprop, horizons to 1,000)
  :metz2019_small  the same at small shapes, fast start, independent phases, horizons to 3,000
               (~10× cheaper θ-steps; the recipe of pretrained:metz2019-glyphs-v1)
  :glyphs_v2   the recipe that made pretrained:glyphs-v1/v2 (lockstep phases, truncated backprop)
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.train import default


def glyphs_v2(config):
    config.schedule.horizon = (50, 1000)
    config.schedule.phases = "lockstep"
    config.gradient_estimator = "truncated_backprop"
    config.gradient_estimator_config = ml_collections.ConfigDict()


def metz2019(config):
    glyphs_v2(config)  # no recipe has been measured to beat lockstep truncated backprop for metz2019 yet
    config.update_rule = "metz2019"
    config.remat = True  # without it, K=10 needs ~10 GiB per task (see experiments/train/paper.py)
    config.update_rule_config = ml_collections.ConfigDict()
    config.optimizer.learning_rate = 3e-4


def metz2019_small(config):
    """The paper's rule at shapes where a θ-step costs ~10 CPU-seconds, not ~100 (the long CPU run's recipe)."""
    metz2019(config)
    config.batch_size = 32
    config.architecture = ml_collections.ConfigDict(dict(depths=(1, 2), widths=(32, 64), top_width=32))
    config.task_family_config.image_size = 14
    config.update_rule_config = ml_collections.ConfigDict(dict(mix_init=1.0))
    config.optimizer.learning_rate = 1e-3
    config.schedule.phases = "independent"
    config.schedule.horizon = (50, 3000)  # as long as evaluation (pretrained:metz2019-glyphs-v1 from θ-step 363)
    config.checkpoint_every = 25


def get_config(arg=None):
    config = default.get_config()
    config.num_steps = 20000
    config.batch_size = 128
    config.task_family_config = ml_collections.ConfigDict(dict(
        datasets=("glyphs",), split="train", classes=(), classes_per_task=10, image_size=16,
        examples_per_class=10, max_classes=10))
    config.architecture = ml_collections.ConfigDict(dict(depths=(1, 2, 3), widths=(64, 128), top_width=32))
    config.schedule.truncation_lengths = (10,)
    config.schedule.horizon = (50, 3000)
    config.optimizer = ml_collections.ConfigDict(dict(learning_rate=1e-3, clip_norm=1.0))
    config.checkpoint_every = 100
    config.schedule.phases = "independent"
    config.gradient_estimator = "nres"
    config.gradient_estimator_config = ml_collections.ConfigDict(dict(num_pairs=2))
    return apply_variant(config, arg, {"metz2019": metz2019, "metz2019_small": metz2019_small,
                                       "glyphs_v2": glyphs_v2},
                         "experiments/train/glyphs.py")
