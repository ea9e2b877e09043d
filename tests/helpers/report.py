"""Shared by the report and picture tests: a small study's records."""

from __future__ import annotations

import ml_collections

from metaplastic.core import evaluation


METHODS = ("learned", "hebbian", "raw_input")


def study(seeds: int, datasets=None, **fields) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(dict(
        name="synthetic", seeds=seeds, rule="simple_local",
        methods=dict(learned=dict(method="update_rule"), hebbian=dict(method="update_rule", rule="hebbian"),
                     raw_input=dict(method="raw_input")),
        datasets=datasets or dict(digits_5_9=dict(dataset="digits", classes=(5, 6, 7, 8, 9))),
        steps=(10,), shots=(5,), main_shots=5))
    for key, value in fields.items():
        config[key] = value
    return evaluation.resolve_study(config)


def records(seeds, accuracy, datasets=("digits_5_9",), steps=(10,), shots=(5,), methods=METHODS):
    """One record per (dataset, seed, method, steps, shots); accuracy(dataset, seed, method, steps, shots)."""
    return [{"method": m, "dataset": d, "arch": "2x64", "depth": 2, "width": 64, "seed": s, "steps": t,
             "shots": k, "finite": True, "filters": None,
             "accuracy": {"ridge": accuracy(d, s, m, t, k), "logistic": accuracy(d, s, m, t, k) - 0.05}}
            for d in datasets for s in range(seeds) for m in methods for t in steps for k in shots]
