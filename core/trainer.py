"""The meta-trainer: sample tasks -> estimator gives a meta-gradient -> Adam updates θ -> log, checkpoint.

Nothing here knows which rule, objective, task family or estimator it runs.
Randomness: every key is `run_key(seed, purpose, step)` (`core.keys`), so a resumed run reproduces an
uninterrupted one bit for bit.

The pieces that stand alone live beside it: the key scheme (core.keys), the meta-optimiser
(core.optimizer), task groups and their phases (core.tasks), checkpoints (core.checkpoint), snapshots (core.snapshot), the workdir (core.workdir),
whether a compiled step fits in memory (core.device_memory).
It is long because what is left is one run's state and its lifecycle: starting or resuming it (bit for
bit), the θ-step loop with its stops (time, signals, skipped steps), and logging and saving it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental.compilation_cache import compilation_cache

from metaplastic.core import config as config_lib
from metaplastic.core import distributed
from metaplastic.core.checkpoint import Checkpointer, CheckpointMismatch
from metaplastic.core.device_memory import CheckedStep, readable_bytes
from metaplastic.core.errors import UserError, one_line
from metaplastic.core.estimation import reset_tasks
from metaplastic.core.interfaces import GradientEstimator, TruncationData
from metaplastic.core.keys import KeyPurpose, initial_theta, run_key
from metaplastic.core.metric_writers import create_default_writer, flatten_hparams
from metaplastic.core.optimizer import make_optimizer, make_update_fn
from metaplastic.core.progress import Progress, StopSignals, progress_mode
from metaplastic.core.tasks import ArchitectureSampler, Schedule, TaskGroup, TaskPhases, sample_group
from metaplastic.core.ops.files import write_atomic
from metaplastic.core.snapshot import load_snapshot
from metaplastic.core.unroll import labels_only_loss
from metaplastic.core.validation import Validator
from metaplastic.core.workdir import WorkdirError, WorkdirLock, check_config, keep_config_history, shown_changes


@functools.partial(jax.jit, static_argnames=("estimator",))
def estimate_step(estimator: GradientEstimator, theta, state, data: TruncationData, key: jax.Array):
    """One θ-step's estimate as one computation: `GradientEstimator.estimate` is jit-able with the
    estimator static, so the trainer can compile it ahead of time and check it fits in memory."""
    return estimator.estimate(theta, state, data, key)


class MetaTrainer:
    """Holds the built components and the loop state; `run()` trains to config.num_steps.

    With several devices or processes the meta-batch is sharded over all of them
    (`core.distributed`); the numbers do not depend on how many there are.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path, lock: bool = True):
        distributed.initialize(distributed.process_settings(config))  # before any device is touched
        distributed.check_devices()  # JAX_PLATFORMS naming a platform this machine lacks: one line
        self.config = config
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # one run per workdir: the primary process holds the lock (several hosts share one workdir)
        self._lock = WorkdirLock(self.workdir) if lock and distributed.is_primary() else None
        try:
            self._build(config, lock)
        except BaseException:  # a refused or broken start must not keep the workdir locked
            if self._lock is not None:
                self._lock.release()
            raise

    def _build(self, config: ml_collections.ConfigDict, lock: bool) -> None:
        _use_compilation_cache(config, self.workdir)
        self.components = config_lib.build_components(config)
        self.unroll = self.components.unroll
        self.architectures = ArchitectureSampler(**config.architecture)
        self.schedule = Schedule(**config.schedule)
        self.sharding = distributed.TaskSharding.create(config.tasks_per_step)
        self.local_tasks = self.sharding.local_tasks()
        self.checkpointer = Checkpointer(self.workdir / "checkpoints", keep=config.checkpoint_keep)
        self.validator = (Validator(config, self.components.rule, self.components.objective, self.workdir)
                          if config.validation.every > 0 else None)
        self._estimate = CheckedStep(estimate_step, self._too_big, static_argnames=("estimator",))
        self._prefetcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="truncation-data")
        self._pending = None  # (step, group_start, future of (group, data)) for the next step

        self.step = 0
        self.skipped = 0
        self.consecutive_skipped = 0
        self.elapsed_seconds = 0.0  # wall-clock seconds of meta-training so far, over every session
        self.theta = self.sharding.replicate(initial_theta(self.components.rule, self.config.seed))
        self._init_meta_optimiser()
        self.opt_state = self._fresh_opt_state(self.theta)
        self.group = None
        self.group_start = 0
        self.group_inner_steps = 0  # inner steps since the group started (host copy)
        self.phases: TaskPhases | None = None  # independent phases: where each task is
        self.estimator_state = None
        changes = []
        if lock and self.checkpointer.all_steps():  # before restoring: another run's θ must not be read
            changes = check_config(self.workdir, config.to_dict(), config.allow_config_change)
        try:
            resumed = self._restore()
        except CheckpointMismatch as error:
            changed = shown_changes(changes) or "no field changed"
            raise WorkdirError(f"{error}: the checkpoints are intact, but config.allow_config_change cannot "
                               f"change the shapes of θ or of the task state ({changed}); resume with the fields "
                               "that set them as they were, or use another --workdir") from None
        if not resumed:
            self._start_from(config.init_snapshot, config.init_theta)
        elif changes:
            keep_config_history(self.workdir, self.step)

    def _init_meta_optimiser(self) -> None:
        """What turns a meta-gradient into a θ update (`core.genome` puts its strategy here)."""
        config = self.config
        genome_mask = (self.components.rule.genome_mask(initial_theta(self.components.rule, config.seed))
                       if config.optimizer.get("genome_learning_rate", 0) > 0 else None)
        self.optimizer = make_optimizer(config, genome_mask=genome_mask)
        self.update = make_update_fn(self.optimizer, self.sharding.replicated)

    def _fresh_opt_state(self, theta):
        return self.sharding.replicate(self.optimizer.init(theta))

    def _sizing_fields(self) -> str:
        """The config fields that set how much memory a θ-step needs, with their values."""
        return (f"config.batch_size ({self.config.batch_size}) or config.tasks_per_step "
                f"({self.config.tasks_per_step})")

    def _too_big(self, needed: int, free: int, where: str) -> Exception:
        return TrainingError(f"θ-step {self.step + 1} needs {readable_bytes(needed)} of memory (XLA's analysis "
                             f"of the compiled step) but {where} has {readable_bytes(free)} free: lower "
                             f"{self._sizing_fields()}")

    def _key(self, purpose: KeyPurpose, step: int) -> jax.Array:
        return run_key(self.config.seed, purpose, step)

    # independent phases: each task's position, its horizon, the θ-step its slot's task was drawn
    task_steps = property(lambda self: None if self.phases is None else self.phases.steps)
    task_horizons = property(lambda self: None if self.phases is None else self.phases.horizons)
    task_starts = property(lambda self: [] if self.phases is None else list(self.phases.starts))

    # -- task groups and their data -------------------------------------------
    def _sample_group(self, step: int) -> TaskGroup:
        """The same group on every process: T tasks, of which each process feeds its own rows."""
        return sample_group(self.components.family, self.architectures, self.schedule,
                            self._key(KeyPurpose.GROUP, step), self.config.tasks_per_step)

    def _build_data(self, group: TaskGroup, step: int) -> TruncationData:
        """This process's tasks' data for `step` as global arrays [T, K, ...] sharded over tasks.

        Task i draws from the i-th key of the step's split, as `tasks.group_data` does,
        so the data do not depend on how tasks are spread over processes.
        """
        family = self.components.family
        keys = jax.random.split(self._key(KeyPurpose.DATA, step), len(group.tasks))
        parts = [family.truncation_data(group.tasks[i], keys[i], group.truncation_length,
                                        self.config.batch_size) for i in self.local_tasks]
        return self.sharding.from_local_tasks(jax.tree.map(lambda *xs: np.stack(xs), *parts))

    def _prepare(self, step: int, group_start: int, group: TaskGroup | None):
        group = group if group is not None else self._sample_group(group_start)
        return group, self._build_data(group, step)

    def _prefetch(self, step: int, group_start: int, group: TaskGroup | None) -> None:
        """Build `step`'s data on a background thread while the device computes (`group`: None = new)."""
        self._pending = (step, group_start,
                         self._prefetcher.submit(self._prepare, step, group_start, group))

    def _take_prefetched(self, step: int, group_start: int):
        pending, self._pending = self._pending, None
        if pending is not None and pending[:2] == (step, group_start):
            return pending[2].result()
        if pending is not None:  # built for a group that was abandoned
            pending[2].result()
        return None

    def _start_group(self, step: int) -> None:
        prefetched = self._pending is not None and self._pending[:2] == (step, step)
        self.group = self._pending[2].result()[0] if prefetched else self._sample_group(step)
        self.group_start = step
        self.group_inner_steps = 0
        if not self.schedule.independent:
            state = self.components.estimator.init_state(
                self.theta, self._key(KeyPurpose.INIT, step), self.group.arch,
                self.config.tasks_per_step, self.group.horizon)
        else:
            self.phases = TaskPhases.start(self.group)
            state = self.components.estimator.init_state(
                self.theta, self._key(KeyPurpose.INIT, step), self.group.arch,
                self.config.tasks_per_step, self.phases.horizons)
            state = state.replace(step_in_horizon=jnp.asarray(self.phases.steps))
        self.estimator_state = self.sharding.place_state(state)

    def _group_done(self) -> bool:
        return self.group is None or self.group_inner_steps >= self.group.horizon

    def _reset_ended(self, state, ended: np.ndarray, horizons: np.ndarray, step: int):
        """`state` with the ended tasks' rows fresh (φ_0, step 0, their new horizons, fresh estimator state)."""
        fresh = self.components.estimator.init_state(
            self.theta, self._key(KeyPurpose.RESET, step), self.group.arch, self.config.tasks_per_step,
            horizons)
        fresh = self.sharding.place_state(fresh)
        return reset_tasks(state, fresh, self.sharding.replicate(jnp.asarray(ended)))

    # -- checkpoints ---------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"theta": self.theta, "opt_state": self.opt_state, "estimator": self.estimator_state}

    def save(self) -> None:
        meta = {"step": self.step, "skipped": self.skipped, "group_start": self.group_start,
                "has_group": self.group is not None, "group_inner_steps": self.group_inner_steps,
                "task_starts": list(self.task_starts), "elapsed_seconds": self.elapsed_seconds}
        self.checkpointer.save(self.step, self._state(), meta)

    def _template(self, meta: dict) -> dict[str, Any]:
        """The state's structure for a checkpoint with this meta (rebuilds its task group)."""
        if meta["has_group"]:
            self._start_group(meta["group_start"])
        else:
            self.group, self.estimator_state = None, None
        return self._state()

    def _restore(self) -> bool:
        if self.config.init_snapshot and self.checkpointer.all_steps():
            self._refuse_snapshot_over_checkpoints(self.checkpointer.all_steps()[-1])
        found = self.checkpointer.restore_newest_intact(self._template)
        if found is None:
            return False
        _, meta, restored = found
        self.theta, self.opt_state = restored["theta"], restored["opt_state"]
        self.estimator_state = restored["estimator"]
        if self.estimator_state is not None:
            self.group_inner_steps = meta.get("group_inner_steps", int(np.max(self.estimator_state.step_in_horizon)))
        if self.estimator_state is not None and self.schedule.independent:
            self.phases = TaskPhases.resumed(jax.device_get(self.estimator_state.step_in_horizon),
                                             jax.device_get(self.estimator_state.horizon), meta["task_starts"])
            self.group = self.phases.redrawn(self.components.family, self.schedule, self.group,
                                             lambda start: self._key(KeyPurpose.TASK, start))
        self.step, self.skipped = meta["step"], meta["skipped"]
        self.group_start = meta["group_start"]
        self.elapsed_seconds = meta.get("elapsed_seconds", 0.0)
        return True

    def _refuse_snapshot_over_checkpoints(self, newest: int) -> None:
        """`init_snapshot` starts a new run: a workdir with checkpoints resumes them, so a snapshot given
        there is refused, unless it is the one this run started from (its command, run again)."""
        snapshot = self.config.init_snapshot
        try:
            started_from = json.loads((self.workdir / "config.json").read_text()).get("init_snapshot") or ""
        except (OSError, ValueError, AttributeError):
            started_from = ""
        if started_from and os.path.realpath(started_from) == os.path.realpath(snapshot):
            return
        raise WorkdirError(f"workdir '{self.workdir}' already holds checkpoints (newest step {newest}), which a "
                           f"run resumes; config.init_snapshot='{snapshot}' only starts a new run: drop it to "
                           "resume this run, or give a fresh --workdir to continue the snapshot")

    def _start_from(self, snapshot: str, theta_source: str) -> None:
        """A new run: continue a snapshot (θ, optimiser, step), or fine-tune the θ of a saved rule."""
        if snapshot and theta_source:
            raise config_lib.ConfigError("config.init_snapshot and config.init_theta: set at most one")
        if snapshot:
            theta, opt_state, meta = load_snapshot(snapshot, jax.device_get(self.theta),
                                                   jax.device_get(self.opt_state), self.config.to_dict())
            self.theta, self.opt_state = self.sharding.replicate(theta), self.sharding.replicate(opt_state)
            self.step, self.skipped = meta["step"], meta["skipped"]
            self.elapsed_seconds = float(meta.get("elapsed_seconds", 0.0))
        elif theta_source:
            from metaplastic.core.rules import load_rule

            learned = load_rule(theta_source)
            if type(learned.rule) is not type(self.components.rule):
                raise config_lib.ConfigError(
                    f"config.init_theta='{theta_source}': its rule is {type(learned.rule).__name__}, this "
                    f"config trains config.update_rule='{self.config.update_rule}'")
            template = self.components.rule.init_theta(jax.random.PRNGKey(0))
            if jax.tree.structure(template) != jax.tree.structure(learned.theta) or any(
                    np.shape(a) != np.shape(b) for a, b in zip(jax.tree.leaves(template),
                                                               jax.tree.leaves(learned.theta))):
                raise config_lib.ConfigError(f"config.init_theta='{theta_source}': θ does not fit "
                                             "config.update_rule_config (other sizes)")
            self.theta = self.sharding.replicate(learned.theta)
            self.opt_state = self._fresh_opt_state(self.theta)

    # -- the loop ------------------------------------------------------------
    def _estimate_arguments(self, data: TruncationData) -> dict[str, Any]:
        return dict(estimator=self.components.estimator, theta=self.theta, state=self.estimator_state,
                    data=data, key=self._key(KeyPurpose.UNROLL, self.step))

    def compile_next_step(self) -> None:
        """Compile the next θ-step now and refuse it (`TrainingError`) if it cannot fit in memory; `run`
        calls it before it writes anything. The step's group and data, made for that, are the step's
        own: `train_step` takes them as prefetched and runs the executable compiled here."""
        if self._group_done():
            self._start_group(self.step)
        ready = concurrent.futures.Future()
        ready.set_result(self._prepare(self.step, self.group_start, self.group))
        self._pending = (self.step, self.group_start, ready)
        self._estimate.compiled(**self._estimate_arguments(ready.result()[1]))

    def train_step(self) -> dict[str, float]:
        if self._group_done():
            self._start_group(self.step)
        prefetched = self._take_prefetched(self.step, self.group_start)
        data = prefetched[1] if prefetched else self._build_data(self.group, self.step)
        # compiled and checked against free memory on a signature's first step (later K or shapes too)
        grad, next_state, metrics = self._estimate(**self._estimate_arguments(data))
        self.theta, self.opt_state, ok, grad_norm = self.update(
            self.theta, self.opt_state, grad, metrics["meta_loss"])
        family = self.components.family
        if family.label_dim < family.target_dim:  # regression targets too: how much is the labels?
            metrics = dict(metrics, meta_loss_labels=labels_only_loss(self.unroll, next_state.inner, data,
                                                                     family.label_dim))
        # the device is busy: build the next step's data, guessing whether this group ends now
        length = self.group.truncation_length
        ends = self.group_inner_steps + length >= self.group.horizon
        next_group, ended, horizons = self.group, None, None
        if self.schedule.independent and not ends:
            next_group, ended, horizons = self.phases.replacements(
                self.components.family, self.schedule, self.group, self._key(KeyPurpose.TASK, self.step))
        self._prefetch(self.step + 1, self.step + 1 if ends else self.group_start, None if ends else next_group)
        host = jax.device_get({"ok": ok, "grad_norm": grad_norm, "metrics": metrics,
                               "inner_step": next_state.step_in_horizon,
                               "horizon": next_state.horizon})  # the step's one sync
        resets = 0
        if host["ok"]:
            if ended is not None and ended.any():
                next_state = self._reset_ended(next_state, ended, horizons, self.step)
                resets = int(ended.sum())
            if self.schedule.independent:
                self.phases = self.phases.advanced(length, self.step, ended, horizons)
            self.estimator_state = self.sharding.place_state(next_state)
            self.group, self.group_inner_steps = next_group, self.group_inner_steps + length
            self.consecutive_skipped = 0
        else:  # the non-finite step never reaches θ; its tasks are abandoned
            self.skipped += 1
            self.consecutive_skipped += 1
            self.group = None
        self.step += 1
        out = {k: float(v) for k, v in host["metrics"].items()}
        # why a step was skipped: 1 = non-finite meta-loss, 2 = finite loss, non-finite meta-gradient
        out["skip_reason"] = 0 if host["ok"] else (1 if not np.isfinite(out["meta_loss"]) else 2)
        # per-task positions (means over tasks under independent phases), before any reset
        out.update(grad_norm=float(host["grad_norm"]), skipped=self.skipped,
                   inner_step=float(np.mean(host["inner_step"])), horizon=float(np.mean(host["horizon"])),
                   depth=len(self.group.arch.widths) if self.group else 0)
        if self.schedule.independent:
            progress = np.asarray(host["inner_step"]) / np.asarray(host["horizon"])
            out.update(task_resets=resets, progress_spread=float(np.std(progress)))
        return out

    def run(self, progress: bool | str = True, max_seconds: float | None = None,
            max_cpu_seconds: float | None = None) -> dict[str, Any]:
        """Train to config.num_steps, or until `max_seconds` of wall-clock time or `max_cpu_seconds` of
        this process's CPU time (all threads) have passed; save at exit.

        `progress` (`core.progress`): True or "bar" = a tqdm bar; "lines" = a timestamped line every
        `LINE_SECONDS` with done/total, rate and ETA (for logs and pipes); False or "off" = nothing.
        SIGTERM or Ctrl-C stops it after the current θ-step, saved (`summary["stopped"]` names the
        signal); a second Ctrl-C quits at once. The session's first θ-step always runs: it includes the
        compile, which a limit or a signal cannot cut short, and the run must move on however short its
        sessions. Before anything is written, `compile_next_step` compiles that step and refuses it
        (`TrainingError`) when it cannot fit in memory."""
        config = self.config
        primary = distributed.is_primary()
        writer = None
        if config.time_limit_seconds:
            max_seconds = min(max_seconds or float("inf"), config.time_limit_seconds)
        first_step, started, cpu_started = self.step, time.perf_counter(), time.process_time()
        self._saved_step = self.step
        reporter = Progress("meta-train", config.num_steps, self.step, unit="step",
                            mode=progress_mode(progress) if primary else "off")
        reporter.resuming_notice()
        stop = StopSignals(reporter, then="saving it", quit_note=lambda: (
            f"the same command resumes from step {self._saved_step}" if self._saved_step
            else "nothing was saved yet: the same command starts again"))
        try:
            compile_seconds = 0.0  # the first θ-step's compile, done here: counted as that step's time
            if self.step < config.num_steps:
                reporter.compiling_notice()
                self.compile_next_step()
                compile_seconds = time.perf_counter() - started
            if primary:
                write_atomic(self.workdir / "config.json",
                             json.dumps(config.to_dict(), indent=2, default=str).encode())
                writer = create_default_writer(self.workdir, resume_step=self.step,
                                               loss_name=self.components.objective.loss_name())
                writer.write_hparams(flatten_hparams(config.to_dict()))
            if self.validator is not None and self.validator.first_step < 0 and primary:
                scores = self.validator.observe(self.step, self.theta)  # the starting θ: what to beat
                if writer:
                    writer.write(self.step, scores)
            while self.step < config.num_steps and (self.step == first_step or not stop.requested):
                later = self.step > first_step  # the session's first step always runs (see above)
                if later and max_seconds is not None and time.perf_counter() - started >= max_seconds:
                    break
                if later and max_cpu_seconds is not None and time.process_time() - cpu_started >= max_cpu_seconds:
                    break
                tick = time.perf_counter()
                try:
                    metrics = self.train_step()
                except jax.errors.JaxRuntimeError as error:
                    if "RESOURCE_EXHAUSTED" not in str(error):
                        raise  # a bug: it keeps its traceback
                    raise TrainingError(
                        f"θ-step {self.step + 1} does not fit in the device's memory ({one_line(error)[:200]}): "
                        f"lower {self._sizing_fields()}") from None
                metrics["seconds"] = time.perf_counter() - tick + compile_seconds
                compile_seconds = 0.0
                self.elapsed_seconds += metrics["seconds"]
                validated = self.validator is not None and self.validator.due(self.step) and primary
                if validated:
                    metrics.update(self.validator.observe(self.step, self.theta))
                    if self.validator.should_stop(self.step):
                        stop.requested = True
                        print(f"metaplastic: stopping at step {self.step}: validation has not beaten its first "
                              f"score ({self.validator.first_loss:.4f} at step {self.validator.first_step}) in "
                              f"{config.validation.patience} θ-steps (config.validation.patience)", flush=True)
                if writer and (validated or self.step % config.log_every == 0 or self.step == config.num_steps):
                    writer.write(self.step, metrics)
                reporter.update(self.step, note=f"meta_loss {metrics['meta_loss']:.4f} skipped {self.skipped}")
                if self.step % config.checkpoint_every == 0:
                    self.save()
                    self._saved_step = self.step
                if self.consecutive_skipped >= config.max_consecutive_skipped:
                    raise TrainingError(
                        f"the last {self.consecutive_skipped} θ-steps were all skipped (non-finite meta-loss or "
                        f"meta-gradient; see skip_reason in {self.workdir / 'metrics.csv'}); stopped at step "
                        f"{self.step} (config.max_consecutive_skipped={config.max_consecutive_skipped})")
            ran = self.step - first_step
            if ran and self.consecutive_skipped >= ran and not stop.signalled:  # θ never changed
                raise TrainingError(
                    f"every θ-step this run made ({ran}: steps {first_step + 1}-{self.step}) was skipped "
                    "(non-finite meta-loss or meta-gradient; see skip_reason in "
                    f"{self.workdir / 'metrics.csv'}), so θ did not change")
        finally:
            self._pending = None
            self._prefetcher.shutdown(wait=True, cancel_futures=True)
            if self.step != self._saved_step:
                self.save()  # at exit, including KeyboardInterrupt
                self._saved_step = self.step
            if writer:
                writer.close()
            reporter.close()
            self.checkpointer.close()
            if self._lock is not None:
                self._lock.release()
            stop.restore()  # only now: a second Ctrl-C during the last save still quits at once
        elapsed = time.perf_counter() - started
        # stopped: the signal ("SIGTERM", "Ctrl-C") that stopped the run before num_steps (saved; the same
        # command resumes it); preempted: that signal was SIGTERM
        stopped = stop.signal if stop.signalled and self.step < config.num_steps else None
        return {"steps": self.step, "skipped": self.skipped, "seconds": elapsed,
                "steps_run": self.step - first_step, "steps_per_second": (self.step - first_step) / max(elapsed, 1e-9),
                "stopped": stopped, "preempted": stopped == "SIGTERM"}


class TrainingError(UserError, RuntimeError):
    """Meta-training cannot go on (e.g. every recent step was skipped)."""


def _use_compilation_cache(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    """JAX's persistent compilation cache in `config.compilation_cache_dir` (default: the workdir).

    A cache directory chosen outside the config (JAX_COMPILATION_CACHE_DIR) wins.
    """
    if not config.compilation_cache or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    directory = config.compilation_cache_dir or str(workdir / "compilation_cache")
    compilation_cache.set_cache_dir(str(pathlib.Path(directory).absolute()))
    compilation_cache.reset_cache()  # a cache looked up before (e.g. none) is not consulted again otherwise


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, progress: bool = True):
    """Meta-train by meta-gradients (resuming from `workdir` if it holds a checkpoint). Returns a summary
    dict. `core.genome.train` picks this or the genome trainer by `config.trainer`."""
    return MetaTrainer(config, workdir).run(progress=progress)

