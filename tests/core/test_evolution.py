"""The evosax strategies as `GenomeStrategy`s (`cma_es`, `snes`, `open_es`) minimise a quadratic."""

import jax
import jax.numpy as jnp
import pytest

from metaplastic.registries import get_registry


@pytest.mark.parametrize("name", ["cma_es", "snes", "open_es"])
def test_genome_strategies_minimise_a_quadratic(name):
    strategy = get_registry().get("genome_strategy", name)(population_size=16, std_init=0.3)
    target = jnp.linspace(-0.5, 0.5, 5)
    state = strategy.init(jax.random.PRNGKey(0), jnp.zeros(5))
    start = float(jnp.sum(target ** 2))
    for generation in range(60):
        ask_key, tell_key = jax.random.split(jax.random.PRNGKey(generation))
        population, asked = strategy.ask(ask_key, state)
        state, _ = strategy.tell(tell_key, population, jnp.sum((population - target) ** 2, axis=1), asked)
    assert float(jnp.sum((strategy.mean(state) - target) ** 2)) < 0.05 * start
