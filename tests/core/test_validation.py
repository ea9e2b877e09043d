"""Meta-validation's fixed held-out tasks."""

import jax

from metaplastic.core.validation import FixedTasks

from helpers.genome import fixed_tasks


def test_fixed_tasks_are_a_pytree():
    tasks = fixed_tasks((2,), 1)
    assert isinstance(jax.tree.map(lambda a: a, tasks), FixedTasks)
