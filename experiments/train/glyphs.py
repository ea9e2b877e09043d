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
  :genome      stage one of the hand-designed-prior recipe: metz2019(prior="hebbian"), its genome by CMA-ES on
               whole runs to 1,000 inner steps, meta-trained on letters A–Z, validated on a–z (held-out images)
  :genome_wide  stage one on 64- and 256-unit layers, validated on both (the recipe of
               pretrained:genome-glyphs-wide-v1: flat in accuracy from 64 to 1,024 units)
  :nets        stage two: the networks from stage one's best genome (--config.init_theta=<workdir>/best)
"""

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.experiments.train import default


def glyphs_v2(config):
    """The recipe that made pretrained:glyphs-v1/v2: lockstep phases, truncated backprop, horizons to 1,000."""
    config.schedule.horizon = (50, 1000)
    config.schedule.phases = "lockstep"
    config.gradient_estimator = "truncated_backprop"
    config.gradient_estimator_config = ml_collections.ConfigDict()


def metz2019(config):
    """The paper's rule instead of the simple local rule (lockstep, truncated backprop, horizons to 1,000)."""
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


LETTER_CLASSES = tuple(range(10, 36))       # A–Z: meta-training classes of the genome recipe
VALIDATION_CLASSES = tuple(range(36, 62))   # a–z: its validation classes (held-out classes and images)


def genome(config):
    """Stage one: metz2019 starting at the hand-designed rule (prior="hebbian"), its genome meta-trained
    by CMA-ES on whole inner runs, the networks skipped; 10×10 glyphs (θ does not depend on input size)."""
    config.trainer = "genome"
    config.update_rule = "metz2019"
    config.update_rule_config = ml_collections.ConfigDict(dict(prior="hebbian", nets=False))
    config.genome_strategy = "cma_es"
    config.genome_strategy_config = ml_collections.ConfigDict(dict(population_size=16, std_init=0.1))
    config.genome.objective_points = (10, 30, 100, 300, 1000)
    config.num_steps = 2000
    config.tasks_per_step = 8
    config.batch_size = 32
    config.task_family_config.image_size = 10
    config.task_family_config.classes = LETTER_CLASSES
    config.architecture = ml_collections.ConfigDict(dict(depths=(1, 2), widths=(32, 64), top_width=32))
    config.checkpoint_every = 10
    config.validation.update(every=10, points=(100, 1000), num_tasks=4, depths=(1,), widths=(64,), seed=1)
    config.validation.task_family_config = ml_collections.ConfigDict(dict(split="test",
                                                                         classes=VALIDATION_CLASSES))


def genome_wide(config):
    """Stage one meta-trained and validated on 64- and 256-unit layers: a genome fitted to layers of ≤ 64 units
    loses accuracy with width (its near-hard competition and large step), one fitted to both keeps it to 1,024."""
    genome(config)
    config.architecture.widths = (64, 256)
    config.validation.widths = (64, 256)


def nets(config):
    """Stage two: the networks unfrozen from stage one's best genome (--config.init_theta=<stage one's
    workdir>/best), NRES over horizons to 1,000, the genome fast and the networks slow, per-parameter
    clipping; stops when validation has not beaten stage one's within 300 θ-steps."""
    genome(config)
    config.trainer = "gradient"
    config.update_rule_config.nets = True
    config.remat = True
    config.tasks_per_step = 8
    config.num_steps = 5000
    config.schedule = ml_collections.ConfigDict(dict(truncation_lengths=(10,), horizon=(20, 1000),
                                                     phases="independent", group_length=200))
    config.optimizer.update(learning_rate=1e-4, genome_learning_rate=3e-3, clip_per_parameter=0.1, eps=1e-6)
    config.validation.patience = 300
    config.checkpoint_every = 25
    config.validation.every = 25


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
    config.optimizer.learning_rate = 1e-3
    config.checkpoint_every = 100
    config.schedule.phases = "independent"
    config.gradient_estimator = "nres"
    config.gradient_estimator_config = ml_collections.ConfigDict(dict(num_pairs=2))
    return apply_variant(config, arg, {"metz2019": metz2019, "metz2019_small": metz2019_small,
                                       "glyphs_v2": glyphs_v2, "genome": genome, "genome_wide": genome_wide,
                                       "nets": nets},
                         "experiments/train/glyphs.py")
