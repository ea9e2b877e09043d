"""Meta-training on every device of every host: one mesh axis over the tasks of a meta-batch.

The T tasks of a meta-batch are split over a one-axis mesh ("tasks") of all
devices of all processes. Per-task arrays (leading axis T) of the estimator
state and of the truncation data are sharded along it; θ, the optimiser state
and every other array are replicated, so the mean over tasks in the meta-loss
becomes one all-reduce. Each process builds the data of only the tasks whose
rows live on its own devices.

Several processes (hosts) join through `jax.distributed.initialize`, which
must run before JAX touches any device. Arguments come from
`config.distributed` or the environment (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID); with `cluster_detection` JAX finds them
itself under Slurm, Open MPI and other launchers it knows.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from metaplastic.core.documented import documented
from metaplastic.core.errors import UserError
from metaplastic.core.interfaces import EstimatorState

TASK_AXIS = "tasks"


class DistributedError(UserError, ValueError):
    """The device layout or the multi-process setup does not fit the config."""


@dataclasses.dataclass(frozen=True)
class ProcessSettings:
    coordinator_address: str = documented("", "host:port of process 0")
    num_processes: int = documented(0, "0 = single process (unless cluster_detection)")
    process_id: int = documented(-1, "this process's index in [0, num_processes); -1 = JAX_PROCESS_ID")
    cluster_detection: bool = documented(False, "let JAX read Slurm / Open MPI / ... variables")

    @property
    def requested(self) -> bool:
        return self.cluster_detection or self.num_processes > 1 or bool(self.coordinator_address)


def process_settings(config) -> ProcessSettings:
    """`config.distributed` (if the config has it), each unset field filled from the environment."""
    section = config.get("distributed") if hasattr(config, "get") else None
    section = dict(section or {})
    env = os.environ
    address = section.get("coordinator_address") or env.get("JAX_COORDINATOR_ADDRESS", "")
    num = int(section.get("num_processes") or env.get("JAX_NUM_PROCESSES", 0) or 0)
    pid = section.get("process_id", -1)
    if pid is None or pid < 0:
        pid = int(env.get("JAX_PROCESS_ID", -1))
    return ProcessSettings(address, num, pid, bool(section.get("cluster_detection", False)))


def initialize(settings: ProcessSettings) -> None:
    """Join the other processes when settings ask for several; a no-op otherwise or when done already."""
    if not settings.requested or jax.distributed.is_initialized():
        return
    if settings.cluster_detection:
        kwargs = {}
    else:
        missing = [name for name, bad in (("coordinator_address", not settings.coordinator_address),
                                          ("num_processes", settings.num_processes < 1),
                                          ("process_id", settings.process_id < 0)) if bad]
        if missing:
            raise DistributedError(
                f"config.distributed: {', '.join(missing)} unset for a {settings.num_processes}-process run "
                "(set them, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, "
                "or cluster_detection=True under Slurm / Open MPI)")
        if not 0 <= settings.process_id < settings.num_processes:
            raise DistributedError(f"config.distributed.process_id={settings.process_id} is not in "
                                   f"[0, num_processes={settings.num_processes})")
        kwargs = dict(coordinator_address=settings.coordinator_address,
                      num_processes=settings.num_processes, process_id=settings.process_id)
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as error:
        raise DistributedError(f"jax.distributed.initialize failed ({error}); it must run before "
                               "anything uses a JAX device in this process") from None


def check_devices() -> None:
    """JAX's devices can be used; else, when JAX_PLATFORMS asks for a platform this machine lacks,
    a one-line DistributedError (without JAX_PLATFORMS a failure is not the user's: it propagates).
    Call it after `initialize`: it starts JAX's backends."""
    try:
        jax.devices()
    except (RuntimeError, AssertionError) as error:  # JAX_PLATFORMS=cuda without a CUDA plugin: an assert
        platforms = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or ""
        if not platforms:
            raise
        reason = " ".join(str(error).split()).split(" (set JAX_PLATFORMS")[0] or "no backend could start"
        raise DistributedError(f"JAX_PLATFORMS={platforms!r}: no such device here ({reason}); unset "
                               "JAX_PLATFORMS to use the devices this machine has") from None


def is_primary() -> bool:
    return jax.process_index() == 0


@dataclasses.dataclass(frozen=True)
class TaskSharding:
    """Where each array of a meta-batch of `num_tasks` tasks lives."""

    mesh: Mesh
    num_tasks: int

    @classmethod
    def create(cls, num_tasks: int, devices=None) -> "TaskSharding":
        devices = list(jax.devices() if devices is None else devices)
        if num_tasks % len(devices):
            raise DistributedError(f"config.tasks_per_step={num_tasks} is not divisible by the "
                                   f"{len(devices)} devices it is sharded over")
        return cls(Mesh(np.asarray(devices), (TASK_AXIS,)), num_tasks)

    @property
    def tasks(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(TASK_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def local_tasks(self) -> tuple[int, ...]:
        """Indices of the tasks whose rows live on this process's devices, ascending."""
        rows = set()
        for index in self.tasks.addressable_devices_indices_map((self.num_tasks,)).values():
            rows.update(range(*index[0].indices(self.num_tasks)))
        return tuple(sorted(rows))

    # -- placing arrays -------------------------------------------------------
    def _place(self, value, sharding: NamedSharding):
        # exactly `sharding` (not merely an equivalent one), so jit caches hit on every step
        if isinstance(value, jax.Array) and value.committed and value.sharding == sharding:
            return value
        if jax.process_count() == 1 or (isinstance(value, jax.Array) and not value.is_fully_addressable):
            return jax.device_put(value, sharding)
        host = np.asarray(value)  # identical on every process
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def replicate(self, tree):
        """Every leaf on every device. Leaves must hold the same values on every process."""
        return jax.tree.map(lambda x: self._place(x, self.replicated), tree)

    def _per_task_or_replicated(self, tree):
        def place(x):
            per_task = np.ndim(x) >= 1 and np.shape(x)[0] == self.num_tasks
            return self._place(x, self.tasks if per_task else self.replicated)
        return jax.tree.map(place, tree)

    def place_state(self, state: EstimatorState) -> EstimatorState:
        """Shard the per-task leaves (leading axis T); replicate the rest (e.g. lockstep's scalar counters)."""
        return self._per_task_or_replicated(state)

    def from_local_tasks(self, tree):
        """Global arrays [T, ...] from this process's rows [len(local_tasks()), ...] (NumPy)."""
        def put(local):
            local = np.asarray(local)
            return jax.make_array_from_process_local_data(self.tasks, local,
                                                          (self.num_tasks,) + local.shape[1:])
        return jax.tree.map(put, tree)
