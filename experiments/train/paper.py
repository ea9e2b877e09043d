"""The paper's meta-training mixture: rendered glyphs, ImageNet class subsets and CIFAR10 at 16×16,
architectures of 2–5 hidden layers × 64–512 units, the `metz2019` rule.

    metaplastic train --config experiments/train/paper.py --workdir runs/paper

ImageNet (`imagenet16` = TFDS imagenet_resized/16x16) and CIFAR10 come from TFDS (see
docs/datasets.md to prepare them). The mixture skips members whose data is not prepared
here (one line on stderr), so without them it meta-trains on the offline glyphs.
Images are grayscale so every member has the same input size (256).
"""

import ml_collections

from metaplastic.core.config import apply_variant

from metaplastic.experiments.train import default

IMAGE = dict(image_size=16, grayscale=True, classes_per_task=10, examples_per_class=10, max_classes=10,
             max_shift=0.1, max_rotation=15.0, max_noise=0.1, augment_targets=True)
# MNIST, Fashion-MNIST and digits stay held out for evaluation
MEMBERS = (("imagenet16", 2.0), ("cifar10", 1.0), ("glyphs", 1.0))


def get_config(arg=None):
    config = default.get_config()
    config.num_steps = 200_000
    config.batch_size = 128
    config.tasks_per_step = 8
    # metz2019's meta-gradient keeps ~1 GiB of residuals per inner step at 4×128 units, batch 128;
    # remat keeps ~1.1 GiB per task whatever K (benchmarks/bench_meta_training.py, section 3)
    config.remat = True
    config.update_rule = "metz2019"
    config.update_rule_config = ml_collections.ConfigDict()
    config.architecture = ml_collections.ConfigDict(dict(depths=(2, 3, 4, 5), widths=(64, 128, 256, 512),
                                                         top_width=32))
    config.schedule.truncation_lengths = (10, 20)
    config.schedule.horizon = (100, 5000)
    config.optimizer.learning_rate = 3e-4
    config.checkpoint_every = 500
    config.task_family = "mixture"
    config.task_family_config = ml_collections.ConfigDict(dict(
        members=tuple(dict(family="image_classes", weight=weight, config=dict(IMAGE, datasets=(name,)))
                      for name, weight in MEMBERS),
        skip_unavailable=True))
    return apply_variant(config, arg, {}, "experiments/train/paper.py")  # no variants
