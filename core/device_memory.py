"""Whether a compiled step fits in the device's memory, known before it runs.

A θ-step too big for the device would otherwise fail only when it runs, after minutes of compiling and
data building, in XLA's out-of-memory traceback (or, on the CPU, be killed by the system). `CheckedStep`
compiles a jitted function ahead of time, once per argument signature, reads XLA's memory analysis of
the compiled code and refuses it when it needs more than the device has free; it then calls that
executable, so nothing compiles twice and what runs is exactly what the jitted function would run.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable

import jax

# too_big(needed bytes, free bytes, where): the error to raise (where: "device gpu:0", "this machine")
TooBig = Callable[[int, int, str], Exception]


def free_bytes(device: jax.Device) -> int | None:
    """What `device` can still allocate: its allocator's limit less what is in use (GPU, TPU); for the
    CPU, the machine's available memory, within the process's cgroup limit if one is set. None: unknown."""
    try:
        stats = device.memory_stats()
    except (NotImplementedError, RuntimeError):  # a backend without memory statistics
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    if device.platform != "cpu":
        return None
    free = [b for b in (_meminfo_available(), _cgroup_headroom()) if b is not None]
    return min(free) if free else None


def _meminfo_available() -> int | None:
    """Linux's MemAvailable (free memory plus what the kernel can reclaim), else free pages."""
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    """memory.max less memory.current of this process's cgroup (v2), as a batch scheduler sets them."""
    try:
        line = next(l for l in pathlib.Path("/proc/self/cgroup").read_text().splitlines() if l.startswith("0::"))
        folder = pathlib.Path("/sys/fs/cgroup") / line[3:].lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((folder / "memory.current").read_text())
    except (OSError, ValueError, StopIteration):
        return None


def needed_bytes(compiled: jax.stages.Compiled) -> int:
    """What one call allocates beyond its arguments (already held): temporaries and outputs, per device."""
    analysis = compiled.memory_analysis()
    return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes - analysis.alias_size_in_bytes)


def readable_bytes(count: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def check_fits(compiled: jax.stages.Compiled, too_big: TooBig) -> None:
    """Raise `too_big(...)` when a call of `compiled` needs more memory than its devices have free.

    Devices of the CPU share the machine's memory, so their needs add up; an accelerator has its own."""
    shardings = jax.tree.leaves(compiled.input_shardings)
    devices = sorted({d for s in shardings for d in s.device_set if d.process_index == jax.process_index()},
                     key=lambda d: d.id) or jax.local_devices()[:1]
    needed = needed_bytes(compiled)
    if devices[0].platform == "cpu":
        free, needed, where = free_bytes(devices[0]), needed * len(devices), "this machine"
        if free is not None and needed > free:
            raise too_big(needed, free, where)
        return
    for device in devices:
        free = free_bytes(device)
        if free is not None and needed > free:
            raise too_big(needed, free, f"device {device.platform}:{device.id}")


class CheckedStep:
    """`jitted` (a `jax.jit` function) compiled ahead of time per argument signature, each compiled
    step checked by `check_fits` before its first call, then called as that executable.

    Call it with keyword arguments; `static_argnames` are those `jitted` takes as static.
    """

    def __init__(self, jitted: Any, too_big: TooBig, static_argnames: tuple[str, ...] = ()):
        self._jitted, self._too_big, self._static = jitted, too_big, tuple(sorted(static_argnames))
        self._executables: dict[Any, jax.stages.Compiled] = {}

    def compiled(self, **arguments) -> jax.stages.Compiled:
        """The checked executable for these arguments (compiled and checked the first time)."""
        key = self._signature(arguments)
        try:
            executable = self._executables.get(key)
        except TypeError:  # a static argument jit could not hold either
            raise TypeError(self._unhashable(arguments)) from None
        if executable is None:
            executable = self._jitted.lower(**arguments).compile()
            check_fits(executable, self._too_big)
            self._executables[key] = executable
        return executable

    def __call__(self, **arguments):
        executable = self.compiled(**arguments)
        return executable(**{k: v for k, v in arguments.items() if k not in self._static})

    def _unhashable(self, arguments: dict) -> str:
        for name in self._static:
            try:
                hash(arguments[name])
            except TypeError:
                return (f"{name}: a static argument must be hashable (a frozen dataclass, say), got a "
                        f"{type(arguments[name]).__name__}, which is not")
        return "a static argument is not hashable"

    def _signature(self, arguments: dict) -> tuple:
        """What jit's own cache tells calls apart by: static values, tree structure, types, shardings."""
        dynamic = {k: v for k, v in arguments.items() if k not in self._static}
        leaves, treedef = jax.tree.flatten(dynamic)
        return (tuple((name, arguments[name]) for name in self._static), treedef,
                tuple((jax.typeof(x), getattr(x, "sharding", None)) for x in leaves))
