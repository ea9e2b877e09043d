"""A compiled step checked against the memory its device has free before it runs, compiled once per
argument signature and run as that executable (the numbers of the jitted function, bit for bit)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaplastic.core import device_memory
from metaplastic.core.device_memory import CheckedStep, free_bytes, needed_bytes, readable_bytes


class TooBig(Exception):
    pass


def too_big(needed, free, where):
    return TooBig(f"{needed} > {free} on {where}")


@functools.partial(jax.jit, static_argnames=("power",))
def scaled_tanh(power, x, y):
    """Temporaries and an output that grow with x: [n, n] float32."""
    return jnp.tanh(x[:, None] * y[None, :]) ** power


def compiles_counted():
    counted = [0]

    def listen(event, _duration, **_kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            counted[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    return counted


def test_runs_the_jitted_function_compiled_once_per_signature():
    step = CheckedStep(scaled_tanh, too_big, static_argnames=("power",))
    x, y, other_x, short = jnp.linspace(-1, 1, 64), jnp.linspace(0, 2, 64), jnp.linspace(-2, 2, 64), jnp.ones(32)
    counted = compiles_counted()  # (inputs made first: each eager operation compiles too)
    first = step(power=3, x=x, y=y)
    again = step(power=3, x=other_x, y=y)  # other values, same signature: no compile
    assert counted[0] == 1
    step(power=2, x=x, y=y)  # another static value
    step(power=3, x=short, y=short)  # another shape
    assert counted[0] == 3
    np.testing.assert_array_equal(first, scaled_tanh(3, x, y))  # what the jitted function gives
    np.testing.assert_array_equal(again, scaled_tanh(3, other_x, y))


def test_a_step_needing_more_than_is_free_is_refused_before_it_runs(monkeypatch):
    step = CheckedStep(scaled_tanh, too_big, static_argnames=("power",))
    x = jnp.ones(512)  # output alone: 512 × 512 float32 = 1 MiB
    needed = needed_bytes(step.compiled(power=2, x=x, y=x))
    assert needed >= 512 * 512 * 4
    monkeypatch.setattr(device_memory, "free_bytes", lambda device: needed - 1)
    fresh = CheckedStep(scaled_tanh, too_big, static_argnames=("power",))
    with pytest.raises(TooBig, match=f"^{needed} > {needed - 1} on this machine$"):
        fresh(power=2, x=x, y=x)
    monkeypatch.setattr(device_memory, "free_bytes", lambda device: needed)  # just enough
    assert fresh(power=2, x=x, y=x).shape == (512, 512)
    monkeypatch.setattr(device_memory, "free_bytes", lambda device: None)  # unknown: nothing to check
    assert CheckedStep(scaled_tanh, too_big, static_argnames=("power",))(power=2, x=x, y=x).shape == (512, 512)


def test_an_unhashable_static_argument_is_named():
    step = CheckedStep(scaled_tanh, too_big, static_argnames=("power",))
    with pytest.raises(TypeError, match=r"^power: a static argument must be hashable .*, got a list, which is not$"):
        step(power=[2], x=jnp.ones(4), y=jnp.ones(4))


def test_free_memory_of_this_machine_is_known_and_said_readably():
    free = free_bytes(jax.devices("cpu")[0])
    assert free is None or free > 0
    assert [readable_bytes(n) for n in (5, 1234, 2.5e9, 3e13)] == ["5 bytes", "1.2 kB", "2.5 GB", "30.0 TB"]
