"""Shared by the genome tests: the prior rule without its nets, and fixed held-out tasks for it."""

import jax

from metaplastic.core import config as config_lib
from metaplastic.core.interfaces import Architecture
from metaplastic.core.validation import draw_fixed_tasks
from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm
from metaplastic.plugins.update_rules.metz2019 import Metz2019Rule


BASE = MLPBatchNorm()
SMALL = dict(top_delta_size=8, compute_h_size=8, delta_dim=4)
PRIOR_NO_NETS = Metz2019Rule(base_model=BASE, prior="hebbian", nets=False, **SMALL)


def fixed_tasks(points, num_tasks=2):
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"))
    family = config_lib.build_components(config).family
    arch = Architecture(family.input_dim, (16, 8))
    return draw_fixed_tasks(PRIOR_NO_NETS, family, arch, num_tasks, points, 16, jax.random.PRNGKey(5))
