"""`random_init` evaluation method: the base model as initialised, no training (the floor)."""

from __future__ import annotations

import dataclasses

from metaplastic.core.evaluation import BaseModelFeatures
from metaplastic.core.interfaces import EvalMethod
from metaplastic.registries import hookimpl


@dataclasses.dataclass(frozen=True)
class RandomInit(EvalMethod):
    def describe(self):
        return "the study's base model at its random initialisation (same init key as the rules)"

    def train(self, problem, steps):
        model = BaseModelFeatures(problem.base_model, problem.base_model.init(problem.init_key, problem.arch))
        for step in steps:
            yield step, model


@hookimpl
def metaplastic_eval_methods():
    return {"random_init": RandomInit}
