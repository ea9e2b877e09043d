"""The paper's meta-training mixture: rendered glyphs, ImageNet class subsets and CIFAR10 at 16×16,
architectures of 2–5 hidden layers × 64–512 units, the `metz2019` rule.

    metaplastic train --config experiments/paper.py --workdir runs/paper

ImageNet (`imagenet16` = TFDS imagenet_resized/16x16) and CIFAR10 come from TFDS (see
docs/datasets.md to prepare them). When they are not prepared here the mixture falls back
to the offline glyphs and says so on stderr.
Images are grayscale so every member has the same input size (256).
"""

import sys

import ml_collections

from metaplastic.core.data import load_dataset
from metaplastic.core.interfaces import DatasetUnavailable
from metaplastic.experiments import quickstart

IMAGE = dict(image_size=16, grayscale=True, classes_per_task=10, examples_per_class=10, max_classes=10,
             max_shift=0.1, max_rotation=15.0, max_noise=0.1, augment_targets=True)
ONLINE = (("imagenet16", 2.0), ("cifar10", 1.0))
OFFLINE = (("glyphs", 1.0),)  # MNIST, Fashion-MNIST and digits stay held out for evaluation


def _available(name: str) -> bool:
    try:
        load_dataset(name, "train")
        return True
    except DatasetUnavailable:
        return False


def get_config(arg=None):
    config = quickstart.get_config()
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
    config.schedule = ml_collections.ConfigDict(dict(truncation_lengths=(10, 20), horizon=(100, 5000)))
    config.optimizer = ml_collections.ConfigDict(dict(learning_rate=3e-4, clip_norm=1.0))
    config.checkpoint_every = 500

    members, missing = [], []
    for name, weight in ONLINE + OFFLINE:
        if name == "glyphs" or _available(name):
            members.append(dict(family="image_classes", weight=weight,
                                config=dict(IMAGE, datasets=(name,))))
        else:
            missing.append(name)
    if missing:
        print(f"experiments/paper.py: {', '.join(missing)} not available here; meta-training on "
              f"{', '.join(m['config']['datasets'][0] for m in members)} instead", file=sys.stderr)
    config.task_family = "mixture"
    config.task_family_config = ml_collections.ConfigDict(dict(members=tuple(members)))
    return config
