"""Evolution strategies from evosax as `GenomeStrategy`s: what the built-in genome strategies share.

evosax (a maintained JAX library of ES strategies) keeps a strategy's state as a pytree of arrays
and its hyperparameters as a separate `params` pytree; here the hyperparameters come from the
component's config fields on every call, so the state alone (checkpointed by the trainer) is what
a resumed run needs. evosax minimises fitness, as `GenomeStrategy` does. Each plugin names its evosax
algorithm; evosax is imported when a strategy is first used, not when plugins are listed.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, ClassVar

import jax.numpy as jnp

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import GenomeStrategy


@functools.lru_cache(maxsize=32)
def _algorithm(factory: Callable, population_size: int, num_dims: int, kwargs: tuple) -> Any:
    """One evosax algorithm object per (algorithm, population, genome size, options): its jitted
    methods are compiled once per object."""
    return factory(population_size=population_size, solution=jnp.zeros((num_dims,), jnp.float32), **dict(kwargs))


@dataclasses.dataclass(frozen=True)
class EvosaxStrategy(GenomeStrategy):
    """Base of the evosax-backed strategies: a subclass names its evosax algorithm (`ALGORITHM`) and may
    add `options()` and `params_fields()` (evosax `params` fields set from the config)."""

    ALGORITHM: ClassVar[str] = ""  # the class's name in evosax.algorithms
    population_size: int = documented(16, "candidate genomes per generation")
    std_init: float = documented(0.1, "the search distribution's initial standard deviation, per genome element")

    def __post_init__(self):
        if not isinstance(self.population_size, int) or self.population_size < 2:
            raise ValueError(f"genome_strategy_config.population_size: must be an int >= 2, "
                             f"got {self.population_size!r}")
        if not self.std_init > 0:
            raise ValueError(f"genome_strategy_config.std_init: must be > 0, got {self.std_init}")

    def options(self) -> dict:
        """Constructor options of the evosax algorithm besides population and solution."""
        return {}

    def params_fields(self) -> dict:
        """Fields of evosax's `params` that the config sets."""
        return {"std_init": self.std_init}

    def _es(self, num_dims: int):
        options = tuple(sorted(self.options().items()))
        return _algorithm(algorithm(self.ALGORITHM), self.population_size, num_dims, options)

    def _params(self, es):
        return es.default_params.replace(**self.params_fields())

    def init(self, key, mean):
        es = self._es(mean.shape[0])
        return es.init(key, jnp.asarray(mean, jnp.float32), self._params(es))

    def ask(self, key, state):
        es = self._es(state.mean.shape[0])
        return es.ask(key, state, self._params(es))

    def tell(self, key, population, fitness, state):
        es = self._es(state.mean.shape[0])
        state, metrics = es.tell(key, population, fitness, state, self._params(es))
        out = {"es_best_fitness": metrics.get("best_fitness")}
        std = getattr(state, "std", None)
        if std is not None:
            out["es_std"] = jnp.mean(jnp.asarray(std))
        return state, {k: v for k, v in out.items() if v is not None}

    def mean(self, state):
        return state.mean


def algorithm(name: str) -> Callable:
    """evosax.algorithms.<name>, imported on first use (one line if evosax is missing)."""
    try:
        import evosax.algorithms
    except ImportError as error:
        raise ValueError(f"genome strategies need evosax (pip install 'evosax==0.3.2'): {error}") from None
    return getattr(evosax.algorithms, name)


