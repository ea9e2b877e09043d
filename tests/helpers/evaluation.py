"""Shared by the evaluation tests: a tiny study config."""

from __future__ import annotations

import ml_collections

from metaplastic.core import evaluation

from helpers import REPO_ROOT


EXPERIMENTS = REPO_ROOT / "experiments"


def tiny_study(**fields) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(dict(
        name="tiny", seeds=2, rule="simple_local",
        methods=dict(learned=dict(method="update_rule"), raw_input=dict(method="raw_input"),
                     supervised=dict(method="supervised")),
        datasets=dict(digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9), max_test=100)),
        architectures=((1, 16),), top_width=8, batch_size=16, steps=(2,), shots=(1, 3), main_shots=3))
    for key, value in fields.items():
        config[key] = value
    return evaluation.resolve_study(config)
