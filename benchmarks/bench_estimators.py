"""Gradient estimators at equal wall-clock: meta-train θ for a fixed budget with each, then score θ.

    python benchmarks/bench_estimators.py [--seconds 90] [--estimators pes,truncated_es] [--config.x=y ...]

Each estimator meta-trains from the same initial θ on the same config (default:
digits.py) for `--seconds` of wall-clock, after compiling every
(architecture, truncation length) shape it will meet so compile time does not
count against it. θ is then scored on one fixed set of task draws from the
same distribution, not seen in training (every architecture bucket,
`--eval-tasks` tasks each, unrolled `--eval-steps` inner steps from fresh inner
states). Lower meta-loss is better. The numbers of one
run are compared with each other only; other load on the machine shifts them.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time

import jax
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.tasks import TaskGroup, group_data
from metaplastic.core.trainer import MetaTrainer

ESTIMATORS = ("truncated_backprop", "truncated_es", "pes")
_EVAL = 1234  # key purpose unused by the trainer


@functools.partial(jax.jit, static_argnames=("unroll",))
def _batch_loss(unroll, theta, states, data, key):
    return unroll.batch_loss(theta, states, data, key)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/train/digits.py")
    parser.add_argument("--seconds", type=float, default=90.0, help="meta-training wall-clock per estimator")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--eval-tasks", type=int, default=8, help="scoring tasks per architecture bucket")
    parser.add_argument("--eval-steps", type=int, default=100, help="inner steps per scoring task")
    args, overrides = parser.parse_known_args()
    return args, overrides


def sample_groups(trainer: MetaTrainer, key: jax.Array, num_tasks: int, length: int, horizon: int):
    family = trainer.components.family
    for index, arch in enumerate(trainer.architectures.buckets(family.input_dim)):
        keys = jax.random.split(jax.random.fold_in(key, index), num_tasks)
        yield TaskGroup(arch, length, horizon, tuple(family.sample_task(k, arch) for k in keys))


def warm_up(trainer: MetaTrainer) -> None:
    """Compile every shape meta-training will meet, without touching the trainer's state."""
    family, estimator, config = trainer.components.family, trainer.components.estimator, trainer.config
    key = jax.random.PRNGKey(0)
    for length in trainer.schedule.truncation_lengths:
        for group in sample_groups(trainer, key, config.tasks_per_step, length, length):
            # placed as the trainer places them, so the compiled programs are the ones it will call
            state = trainer.sharding.place_state(estimator.init_state(
                trainer.theta, key, group.arch, config.tasks_per_step, group.horizon))
            data = trainer.sharding.from_local_tasks(group_data(family, group, key, config.batch_size))
            grad, _, metrics = estimator.estimate(trainer.theta, state, data, key)
            update = trainer.update(trainer.theta, trainer.opt_state, grad, metrics["meta_loss"])
            jax.block_until_ready(update)


def evaluate(trainer: MetaTrainer, theta, args) -> tuple[float, float]:
    """(meta-loss over the last truncation, meta-loss over the whole unroll), mean over the scoring tasks."""
    family, unroll = trainer.components.family, trainer.unroll
    length = max(trainer.schedule.truncation_lengths)
    steps = length * max(1, args.eval_steps // length)
    key = jax.random.fold_in(jax.random.PRNGKey(trainer.config.seed), _EVAL)
    last, whole = [], []
    for index, group in enumerate(sample_groups(trainer, key, args.eval_tasks, length, steps)):
        group_key = jax.random.fold_in(key, 1000 + index)
        states = unroll.init(group_key, group.arch, args.eval_tasks)
        losses = []
        for step in range(steps // length):
            data = group_data(family, group, jax.random.fold_in(group_key, step), trainer.config.batch_size)
            unroll_key = jax.random.fold_in(group_key, 10_000 + step)
            _, (states, truncation_losses) = _batch_loss(unroll, theta, states, data, unroll_key)
            losses.append(np.asarray(truncation_losses))
        losses = np.concatenate(losses, axis=1)  # [tasks, steps]
        last.append(losses[:, -length:].mean())
        whole.append(losses.mean())
    return float(np.mean(last)), float(np.mean(whole))


def run_one(config, name: str, args) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        trainer = MetaTrainer(config, workdir)
        initial_theta = trainer.theta
        warm_up(trainer)
        train_losses, started = [], time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            metrics = trainer.train_step()
            train_losses.append(metrics["meta_loss"])
        elapsed = time.perf_counter() - started
        trainer.checkpointer.close()
        last, whole = evaluate(trainer, trainer.theta, args)
        return dict(name=name, steps=trainer.step, steps_per_second=trainer.step / elapsed,
                    skipped=trainer.skipped, train_loss=float(np.mean(train_losses[-20:])),
                    eval_last=last, eval_whole=whole, trainer=trainer, initial_theta=initial_theta)


def main():
    args, overrides = parse_args()
    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    base = config_lib.load_config_file(args.config)
    results = []
    for name in names:
        config = config_lib.resolve(base, config_lib.parse_overrides(
            [f"--config.gradient_estimator={name}", *overrides]))
        print(f"{name}: {dict(config.gradient_estimator_config)}, {args.seconds:.0f} s", flush=True)
        results.append(run_one(config, name, args))
    first = results[0]
    baseline = evaluate(first["trainer"], first["initial_theta"], args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nconfig {args.config} {' '.join(overrides)}; {args.seconds:.0f} s each after warm-up; "
          f"scored on {args.eval_tasks} fresh tasks x every architecture, {args.eval_steps} inner steps; "
          f"load average {load:.1f}")
    header = (f"{'estimator':<20}{'steps':>7}{'steps/s':>9}{'skipped':>9}{'train loss':>12}"
              f"{'eval last':>11}{'eval all':>10}")
    print(header + "\n" + "-" * len(header))
    print(f"{'initial θ':<20}{0:>7}{'':>9}{'':>9}{'':>12}{baseline[0]:>11.4f}{baseline[1]:>10.4f}")
    for r in results:
        print(f"{r['name']:<20}{r['steps']:>7}{r['steps_per_second']:>9.2f}{r['skipped']:>9}"
              f"{r['train_loss']:>12.4f}{r['eval_last']:>11.4f}{r['eval_whole']:>10.4f}")


if __name__ == "__main__":
    main()
