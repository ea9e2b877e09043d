"""Benchmark of the `metz2019` update rule (run by hand).

1. Analytic FLOPs of one inner step for the default architecture (196 inputs,
   4×128 hidden, 32 top units, batch 128), the achieved FLOP/s, and that rate as
   a fraction of a jitted fp32 matmul's FLOP/s measured in the same process.
2. The rule applied to a deep, wide MLP (default 11 layers × 10,000 units on
   28×28 inputs) for a few inner steps: seconds per step and peak RSS.

    python benchmarks/bench_metz2019.py [--skip-big] [--big-batch 32] [--big-steps 3]
    python benchmarks/bench_metz2019.py --skip-big --matmul-dtypes fp32,bf16 --matmul-size 8192   # a GPU
    python benchmarks/bench_metz2019.py --skip-default                                            # 2. only
    python benchmarks/bench_metz2019.py --tiny                                  # smoke test: tiny shapes

FLOPs count multiply-adds of matmuls and convolutions as 2; elementwise work
(normalisations, activations) is not counted.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time

import jax
import jax.numpy as jnp

from metaplastic.core.interfaces import Architecture
from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm
from metaplastic.plugins.update_rules.metz2019 import Metz2019Rule


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # ru_maxrss is in KiB on Linux


def device_peak_memory() -> str:
    """", device peak X GiB" on an accelerator that reports it (nothing on the CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return f", device peak {peak / 2 ** 30:.1f} GiB" if peak else ""


def _best_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times), sorted(times)[len(times) // 2]


DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def matmul_flops_per_second(n=2048, repeats=10, dtype="fp32"):
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), DTYPES[dtype])
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), DTYPES[dtype])
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best, _ = _best_seconds(lambda: matmul(a, b), repeats)
    return 2 * n ** 3 / best


def _gram_flops(p, n, r, symmetric):
    """FLOPs of `sym_gram_product` for m [p, n] and factors [r, n] (mirrors its branch choice)."""
    if not symmetric:
        return 4 * p * n * r if n * (r + p) >= 2 * p * r else 2 * n * n * r + 2 * p * n * n
    return 8 * p * n * r if n * (r + p) >= 4 * p * r else 2 * n * n * r + 2 * p * n * n


def inner_step_flops(rule: Metz2019Rule, arch: Architecture, batch: int) -> int:
    """Matmul and convolution FLOPs of one inner step (batch_net='conv')."""
    assert rule.batch_net == "conv"
    b, s, dd, hs, k = batch, rule.top_delta_size, rule.delta_dim, rule.compute_h_size, rule.num_grad_channels
    dims = (arch.input_dim,) + tuple(arch.widths)
    flops = sum(2 * b * n_in * n_out for n_in, n_out in zip(dims[:-1], dims[1:]))   # forward pass

    top = dims[-1]
    flops += 2 * b * top * 5 * s                                                    # top-down net
    flops += 2 * (2 * b * top * 3 * s * s + 2 * b * 3 * s * s)                      # lateral blocks
    flops += rule.top_delta_layers * 2 * b * top * 3 * s * s + 2 * b * top * 3 * s * dd

    c_in = 8 + 1 + 4 + dd
    per_row = 2 * 3 * c_in * hs + rule.compute_h_layers * 2 * 3 * hs * hs
    if rule.unit_conv:
        per_row += (rule.compute_h_layers + 1) * 2 * 2 * 3 * hs * hs
    flops += sum(dims) * b * per_row                                                 # unit states
    flops += sum(2 * b * n * hs * dd for n in dims[1:])                              # δ readout
    flops += sum(2 * b * dd * n_in * n_out for n_in, n_out in zip(dims[:-1], dims[1:]))  # d = δ Vᵀ

    r = k * b
    for n_l, n_u in zip(dims[:-1], dims[1:]):                                        # weight changes
        flops += 2 * b * hs * k * (8 * n_u + 7 * n_l) + 2 * b * n_u * hs             # readouts, bias
        flops += 3 * 2 * n_l * n_u * r + 2 * n_l * n_u * b                           # 3 low-rank, Hebbian
        flops += _gram_flops(n_l, n_u, b, False)                                     # decorrelation
        flops += _gram_flops(n_l, n_u, r, False)                                     # lin upper psd
        flops += 2 * _gram_flops(n_l, n_u, r, True) + 2 * _gram_flops(n_u, n_l, r, True)  # lin/sqr symm
        if not rule.identical_updates:
            raise NotImplementedError("count only for identical updates")
    return flops


def bench_default(rule, matmul_rates, repeats, arch=Architecture(14 * 14, (128,) * 4 + (32,)), batch=128):
    """`matmul_rates`: {dtype name: FLOP/s}; the fractions are of each."""
    theta = rule.init_theta(jax.random.PRNGKey(0))
    state = rule.init_inner_state(jax.random.PRNGKey(1), arch)
    x = jax.random.uniform(jax.random.PRNGKey(2), (batch, arch.input_dim))
    key = jax.random.PRNGKey(3)
    step = jax.jit(rule.inner_step)
    start = time.perf_counter()
    compiled = step.lower(theta, state, x, key).compile()
    compile_s = time.perf_counter() - start
    compiled(theta, state, x, key)
    best, median = _best_seconds(lambda: compiled(theta, state, x, key), repeats)
    flops = inner_step_flops(rule, arch, batch)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    print(f"default architecture {arch.input_dim}-{'-'.join(map(str, arch.widths))}, batch {batch}"
          f" (batch_net={rule.batch_net})")
    print(f"  analytic FLOPs/step      {flops / 1e9:.2f} G   (XLA cost analysis: {cost.get('flops', float('nan')) / 1e9:.2f} G)")
    print(f"  compile                  {compile_s:.1f} s")
    print(f"  seconds/step             best {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms")
    print(f"  achieved FLOP/s          {flops / best / 1e9:.1f} GFLOP/s (best), {flops / median / 1e9:.1f} (median)")
    for dtype, matmul_rate in matmul_rates.items():
        label = "matmul rate" if dtype == "fp32" else f"{dtype} matmul"
        print(f"  fraction of {label}  {flops / best / matmul_rate:.1%} (best), "
              f"{flops / median / matmul_rate:.1%} (median)")


def bench_big(rule, depth, width, batch, steps, input_dim=28 * 28, matmul_rates=None):
    arch = Architecture(input_dim, (width,) * depth)
    dims = (input_dim,) + arch.widths
    weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    print(f"\n{depth} layers × {width} units on {input_dim} inputs, batch {batch}: "
          f"{weights / 1e9:.2f} G weights, W and V {2 * 4 * weights / 2 ** 30:.1f} GiB")
    theta = rule.init_theta(jax.random.PRNGKey(0))
    state = rule.init_inner_state(jax.random.PRNGKey(1), arch)   # eager: one layer's temporaries at a time
    jax.block_until_ready(state)
    print(f"  after init: peak RSS {peak_rss_gib():.1f} GiB")
    step = jax.jit(rule.inner_step, donate_argnums=1)   # W, b, V are updated in place
    xs = jax.random.uniform(jax.random.PRNGKey(2), (steps, batch, input_dim))
    start = time.perf_counter()
    compiled = step.lower(theta, state, xs[0], jax.random.PRNGKey(3)).compile()
    flops = inner_step_flops(rule, arch, batch)
    print(f"  compile {time.perf_counter() - start:.1f} s; analytic FLOPs/step "
          f"{flops / 1e12:.2f} T")
    times = []
    for i in range(steps):
        start = time.perf_counter()
        state = compiled(theta, state, xs[i], jax.random.PRNGKey(3))
        jax.block_until_ready(state)
        seconds = time.perf_counter() - start
        times.append(seconds)
        finite = all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state.params))
        print(f"  step {i + 1}: {seconds:.1f} s, finite={finite}, peak RSS {peak_rss_gib():.1f} GiB"
              + device_peak_memory())
    if matmul_rates and times:
        best = min(times)
        fractions = ", ".join(f"{flops / best / rate:.1%} of {d} matmul" for d, rate in matmul_rates.items())
        print(f"  best step {best:.2f} s: {flops / best / 1e9:.1f} GFLOP/s, {fractions}")
    del state
    gc.collect()


# --tiny: every shape shrunk, so the whole benchmark runs in seconds (a smoke test, not a figure)
TINY = dict(repeats=5, big_depth=3, big_width=512, big_batch=8, big_steps=2, matmul_size=256)
TINY_ARCH, TINY_BATCH = Architecture(6 * 6, (16, 16, 8)), 16


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-default", action="store_true", help="skip section 1 (the default architecture)")
    parser.add_argument("--big-depth", type=int, default=11)
    parser.add_argument("--big-width", type=int, default=10_000)
    parser.add_argument("--big-batch", type=int, default=32)
    parser.add_argument("--big-steps", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n×n×n matmul-rate probe")
    parser.add_argument("--matmul-dtypes", default="fp32",
                        help="comma list of fp32, bf16: the matmul rates the FLOP/s are compared with")
    parser.add_argument("--tiny", action="store_true",
                        help=f"tiny shapes for a smoke test: section 1 on {TINY_ARCH.input_dim}-"
                             f"{'-'.join(map(str, TINY_ARCH.widths))}, batch {TINY_BATCH}; defaults {TINY}")
    if "--tiny" in sys.argv[1:]:
        parser.set_defaults(**TINY)
    args = parser.parse_args()
    dtypes = [d.strip() for d in args.matmul_dtypes.split(",") if d.strip()]
    if not dtypes or any(d not in DTYPES for d in dtypes):
        parser.error(f"--matmul-dtypes: '{args.matmul_dtypes}' (known: {', '.join(DTYPES)})")

    print(f"devices: {jax.devices()}")
    rule = Metz2019Rule(base_model=MLPBatchNorm())
    n = args.matmul_size
    rates = {d: matmul_flops_per_second(n, dtype=d) for d in dtypes}
    for d, rate in rates.items():
        print(f"jitted {d} matmul {n}³: {rate / 1e9:.1f} GFLOP/s")
    if not args.skip_default:
        shapes = dict(arch=TINY_ARCH, batch=TINY_BATCH) if args.tiny else {}
        bench_default(rule, rates, args.repeats, **shapes)
        for d in dtypes:
            print(f"jitted {d} matmul again: {matmul_flops_per_second(n, dtype=d) / 1e9:.1f} GFLOP/s")
    if not args.skip_big:
        bench_big(rule, args.big_depth, args.big_width, args.big_batch, args.big_steps, matmul_rates=rates)
    print(f"peak RSS {peak_rss_gib():.1f} GiB")


if __name__ == "__main__":
    main()
