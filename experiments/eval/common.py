"""What every evaluation study shares: the methods compared, the study fields, the quick shrink.

A study is data: `get_config(arg)` returns a ConfigDict whose fields the evaluation suite fills
and checks (`core.evaluation.study`); variants go through `core.config.apply_variant`.
"""

import ml_collections

from metaplastic.core.rules import RECOMMENDED_RULE


METHODS = dict(
    learned=dict(method="update_rule"),  # the study's rule_checkpoint (else `rule`, untrained)
    hebbian=dict(method="update_rule", rule="hebbian"),
    random_init=dict(method="random_init"),
    raw_input=dict(method="raw_input"),
    supervised=dict(method="supervised"),
    vae=dict(method="vae"),
)


def release(config, steps) -> None:
    """The shipped-rule table's settings: pretrained:genome-glyphs-v1 (the recommended rule) as the learned
    rule, beside the hand-designed rule it started from (`hebbian`) and glyphs-v2; 5 seeds, 10 labels per
    class."""
    config.rule_checkpoint = RECOMMENDED_RULE
    config.seeds = 5
    config.shots = (10,)
    config.main_shots = 10
    config.steps = steps
    config.methods.glyphs_v2 = dict(method="update_rule", checkpoint="pretrained:glyphs-v2")


def study_config(name: str, description: str, seeds: int = 10) -> ml_collections.ConfigDict:
    """Fields every study has; the rule comes from `rule_checkpoint` (else `rule`, untrained)."""
    config = ml_collections.ConfigDict()
    config.name = name
    config.description = description
    config.seed = 0
    config.seeds = seeds
    config.rule = "simple_local"
    config.rule_checkpoint = ""
    return config


def shrink(config, seeds: int = 2, architectures=((1, 16),), steps=(1, 4), shots=(2,)) -> None:
    """The `:quick` variant's common part: few seeds, tiny networks, few steps."""
    config.seeds = seeds
    config.architectures = architectures
    config.top_width = 8
    config.batch_size = 16
    config.steps = steps
    config.shots = shots
    config.main_shots = shots[-1]
