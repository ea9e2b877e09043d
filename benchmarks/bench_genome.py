"""Throughput of genome-first training: a population of genomes on whole inner runs, in one process.

For each population size, one generation's computation (`core.genome.population_losses`: members one
after another, tasks vmapped) of metz2019(prior="hebbian", nets=False) on 1 × 32 + 32 networks, batch 32,
10×10 inputs, is compiled once and timed. Reported: inner steps per CPU-second (this process's CPU time,
all threads, so less sensitive to other load than wall time) and per wall-second, and the FLOP rate
(XLA's cost analysis of the compiled computation ÷ wall time) as a fraction of the rate of a jitted
1024 × 1024 float32 matmul measured in the same run.

    python benchmarks/bench_genome.py --populations 16,64,256 --tasks 4 --steps 100
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of `repeats` calls of fn (already compiled)."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]


def flops_of(fn, *args) -> float:
    analysis = fn.lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis.get("flops", float("nan")))


def matmul_rate(repeats: int) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (1024, 1024), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    wall, _ = timed(lambda: f(a), repeats)
    return 2 * 1024 ** 3 / wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--populations", default="16,64,256")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100, help="inner steps of each run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from metaplastic.core import config as config_lib
    from metaplastic.core.genome import GenomeView, population_losses
    from metaplastic.core.interfaces import Architecture
    from metaplastic.core.validation import draw_fixed_tasks

    config = config_lib.resolve(config_lib.load_config_file("experiments/train/glyphs.py:genome"))
    components = config_lib.build_components(config)
    rule, objective, family = components.rule, components.objective, components.family
    arch = Architecture(family.input_dim, (32, 32))
    points = (args.steps,)
    tasks = draw_fixed_tasks(rule, family, arch, args.tasks, points, 32, jax.random.PRNGKey(0))
    theta = rule.init_theta(jax.random.PRNGKey(0))
    view = GenomeView(theta, rule.genome_mask(theta))
    matmul = matmul_rate(args.repeats)
    # XLA's cost analysis counts a loop's body once, so count one inner step and one objective (T tasks)
    # and multiply by how often a generation runs them
    first = jax.tree.map(lambda a: a[:, 0], (tasks.unlabelled, tasks.meta_a, tasks.meta_b))
    step = jax.jit(jax.vmap(lambda s, x: rule.inner_step(theta, s, x, None)))
    step_flops = flops_of(step, tasks.states, first[0])
    score = jax.jit(jax.vmap(lambda s, a, b: objective.loss(lambda x: rule.features(s, x), a, b)))
    objective_flops = flops_of(score, tasks.states, first[1], first[2])
    print(f"# load {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs; jitted 1024² matmul {matmul / 1e9:.1f} GFLOP/s; "
          f"{args.tasks} tasks × {args.steps} inner steps per member, 10×10 inputs, 1 × 32 + 32, batch 32")
    print("| population | inner steps / CPU-s | inner steps / wall-s | GFLOP per generation | "
          "FLOP rate ÷ matmul rate | compile s |")
    print("|---|---|---|---|---|---|")
    for size in (int(p) for p in args.populations.split(",")):
        population = view.vector(theta)[None] + 0.01 * jax.random.normal(jax.random.PRNGKey(1), (size, view.size))
        started = time.perf_counter()
        compiled = population_losses.lower(rule, objective, points, view, population, tasks).compile()
        compile_seconds = time.perf_counter() - started
        flops_per_generation = size * (args.steps * step_flops + len(points) * objective_flops)
        wall, cpu = timed(lambda: compiled(population, tasks), args.repeats)
        inner = size * args.tasks * args.steps
        print(f"| {size} | {inner / cpu:,.0f} | {inner / wall:,.0f} | {flops_per_generation / 1e9:.2f} | "
              f"{flops_per_generation / wall / matmul:.3f} | {compile_seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
