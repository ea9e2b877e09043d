"""`raw_input` evaluation method: the input itself (pixels, bag of words) as the representation."""

from __future__ import annotations

import dataclasses

import numpy as np

from metaplastic.core.interfaces import EvalMethod, FeatureModel
from metaplastic.registries import hookimpl


class _Identity(FeatureModel):
    def features(self, x):
        return np.asarray(x, np.float32)


@dataclasses.dataclass(frozen=True)
class RawInput(EvalMethod):
    def describe(self):
        return "the raw input (no learning): a learned representation should beat it"

    def train(self, problem, steps):
        for step in steps:
            yield step, _Identity()


@hookimpl
def metaplastic_eval_methods():
    return {"raw_input": RawInput}
