"""The key scheme: every random draw of a meta-training run or a study comes from a key named here.

Meta-training: `run_key(seed, purpose, step)` folds the run's seed, then what the key is for
(`KeyPurpose`), then the θ-step, so a resumed run reproduces an uninterrupted one bit for bit.

Studies: per seed of a study, `study_key(study_seed, seed, purpose)` for JAX draws and
`study_rng(study_seed, seed, purpose, ...)` for NumPy ones (`StudyPurpose`), so every method of a
seed sees the same permutation, test subset, labelled examples, batches and initialisation.
"""

from __future__ import annotations

import enum

import jax
import numpy as np

from metaplastic.core.interfaces import Pytree, UpdateRule


class KeyPurpose(enum.IntEnum):
    """What a run's key is for: the first fold of every key (see `run_key`)."""

    THETA = 0   # θ's initialisation (step 0)
    GROUP = 1   # the task group started at a step
    DATA = 2    # a step's truncation data
    UNROLL = 3  # a step's unroll (rule and estimator randomness)
    INIT = 4    # the inner states of the group started at a step
    TASK = 5    # independent phases: the tasks (and horizons) that replace ended ones after a step
    RESET = 6   # independent phases: their fresh inner states


def run_key(seed: int, purpose: KeyPurpose, step: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), int(purpose)), step)


def initial_theta(rule: UpdateRule, seed: int) -> Pytree:
    """θ at meta-training step 0 of a run with this seed."""
    return rule.init_theta(run_key(seed, KeyPurpose.THETA, 0))


class StudyPurpose(enum.IntEnum):
    """What a study seed's draw is for (see `study_key` and `study_rng`)."""

    PERMUTATION = 0  # the input permutation (NumPy)
    TEST_SUBSET = 1  # the test examples scored (NumPy)
    FEW_SHOT = 2     # the labelled examples of each shot count (NumPy)
    DATA_ORDER = 3   # the unlabelled batches (JAX)
    MODEL_INIT = 4   # the base model's initialisation, shared by methods (JAX)
    METHOD = 5       # anything else a method draws (JAX)


def study_key(study_seed: int, seed: int, purpose: StudyPurpose) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(study_seed), seed), int(purpose))


def study_rng(study_seed: int, seed: int, purpose: StudyPurpose, *extra: int) -> np.random.Generator:
    return np.random.default_rng([study_seed, seed, int(purpose), *extra])
