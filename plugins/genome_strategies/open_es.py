"""`open_es`: OpenAI-ES (Salimans et al. 2017) from evosax: antithetic Gaussian perturbations of fixed
scale, centred-rank fitness, the mean moved by Adam along the ES gradient estimate."""

from __future__ import annotations

import dataclasses
import functools

import optax

from metaplastic.core.documented import documented
from metaplastic.core.evolution import EvosaxStrategy
from metaplastic.registries import hookimpl


@dataclasses.dataclass(frozen=True)
class OpenES(EvosaxStrategy):
    ALGORITHM = "Open_ES"
    population_size: int = documented(16, "even: antithetic pairs")
    std_init: float = documented(0.1, "perturbation scale σ")
    learning_rate: float = documented(0.05, "Adam's step on the mean")

    def __post_init__(self):
        super().__post_init__()
        if self.population_size % 2:
            raise ValueError(f"genome_strategy_config.population_size: open_es samples antithetic pairs, "
                             f"needs an even number, got {self.population_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"genome_strategy_config.learning_rate: must be > 0, got {self.learning_rate}")

    def options(self):
        return {"optimizer": _adam(self.learning_rate), "std_schedule": _constant(self.std_init)}

    def params_fields(self):
        return {}  # σ is the constant schedule above


@functools.lru_cache(maxsize=None)
def _constant(value: float):
    return optax.constant_schedule(value)


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float):
    """One optimiser object per learning rate, so the evosax algorithm built around it is cached."""
    return optax.adam(learning_rate)


@hookimpl
def metaplastic_genome_strategies():
    return {"open_es": OpenES}
