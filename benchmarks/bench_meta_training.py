"""How well meta-training uses the hardware. Run by hand; every figure is a ratio measured in this run.

    python benchmarks/bench_meta_training.py                 # all sections, 10-minute training run
    python benchmarks/bench_meta_training.py --minutes 2     # shorter training run for section 4
    python benchmarks/bench_meta_training.py --sections 1,3  # some sections only
    python benchmarks/bench_meta_training.py --sections 2 --rules metz2019 --tasks 1,8 --steps 10
    python benchmarks/bench_meta_training.py --sections 5 --vectorise-rule metz2019 --tasks 1,8,64,256 --remat on
    python benchmarks/bench_meta_training.py --sections 1 --matmul-dtypes fp32,bf16 --matmul-size 8192
    python benchmarks/bench_meta_training.py --tiny ...      # every shape shrunk: a smoke test, not a figure

1. inner-step FLOP/s ÷ jitted-matmul FLOP/s (simple_local; metz2019 when registered)   goal ≥ 30 %
2. meta-gradient time ÷ forward-only unroll time, K inner steps                          goal ≤ 4×
3. compiled temp memory of a meta-gradient at K = 10, 50, 200, with and without remat: growth exponent
4. compile seconds ÷ total seconds of a digits meta-training run (cold and warm cache) goal ≤ 10 %
5. tasks/s of a meta-gradient step vs meta-batch size T on one device
6. profile: forward and gradient time of each part of metz2019's inner step inside a scan,
   and XLA's convolution against the matmul form the rule uses

FLOPs come from XLA's cost analysis of one inner step (a scan's cost counts its body once,
so loops are timed but not counted). Times are the best of several repeats, which is
what the hardware can do when nothing else is running.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from metaplastic.core.interfaces import Architecture, LabeledBatch, TruncationData
from metaplastic.core.unroll import TruncatedUnroll
from metaplastic.registries import get_registry

DEFAULT_ARCH = Architecture(196, (128, 128, 128, 128, 32))  # the paper's base model on 14×14 inputs
BATCH = 128
META_EXAMPLES = 100  # 10 per class × 10 classes in each of the readout batches A and B
CLASSES = 10


def best_seconds(fn, *args, repeats: int = 5, min_seconds: float = 0.2) -> float:
    """Best wall time of one call of a compiled `fn` (calls batched until they take min_seconds)."""
    jax.block_until_ready(fn(*args))
    calls, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or calls >= 1024:
            break
        calls *= 2
    times = [elapsed / calls]
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def compiled(fn, *args):
    return jax.jit(fn).lower(*args).compile()


def flops_of(compiled_fn) -> float:
    analysis = compiled_fn.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis.get("flops", 0.0))


def build_rule(name: str, **fields):
    registry = get_registry()
    return registry.get("update_rule", name)(base_model=registry.get("base_model", "mlp_bn")(), **fields)


def gradient_variants(name: str) -> list[tuple[str, dict]]:
    """metz2019's normalisation backward passes to time (--gradients): hand-written, JAX's own, or both."""
    if name != "metz2019":
        return [("", {})]
    chosen = {"hand": (True,), "plain": (False,), "both": (True, False)}[OPTIONS["gradients"]]
    return [(" hand-written" if hand else " autodiff", {"hand_written_gradients": hand}) for hand in chosen]


def build_objective():
    return get_registry().get("meta_objective", "ridge_cosdist")()


# rule -> (tasks, inner steps) for sections 1-2: the paper's rule costs ~100× more per step
RULE_SIZES = {"simple_local": (16, 10), "metz2019": (1, 4)}
# what the command line changed (--rules, --tasks, --steps, --remat, --matmul-*; see main)
OPTIONS = {"rules": None, "tasks": None, "steps": None, "remat": None, "gradients": "plain", "matmul_size": 1024,
           "matmul_dtypes": ("fp32",), "lengths": (10, 50, 200), "digits_widths": (64, 64, 32),
           "digits_batch": None, "scan_unroll": (1,)}
DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def rules_to_measure() -> list[str]:
    names = OPTIONS["rules"] or list(RULE_SIZES)
    return [name for name in names if name in get_registry().names("update_rule")]


def remat_choices(default: tuple[bool, ...]) -> tuple[bool, ...]:
    return {None: default, "both": (False, True), "on": (True,), "off": (False,)}[OPTIONS["remat"]]


def too_big(compiled_fn) -> str | None:
    """Why a compiled function cannot run on this device (its memory), or None; on the CPU, None."""
    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if not limit:
        return None
    memory = compiled_fn.memory_analysis()
    need = memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
    size = lambda n: f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"  # noqa: E731
    return f"needs {size(need)}, device has {size(limit)}" if need > limit else None


def failure(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160] if str(error).strip() else ''}"


def fake_data(key, tasks: int, steps: int, arch: Architecture | None = None) -> TruncationData:
    """Random inputs of the right shapes (speed does not depend on the values)."""
    arch = arch or DEFAULT_ARCH  # read at call time: --tiny replaces it
    keys = jax.random.split(key, 3)
    labels = jax.nn.one_hot(jnp.arange(META_EXAMPLES) % CLASSES, CLASSES)
    labels = jnp.broadcast_to(labels, (tasks, steps) + labels.shape)

    def batch(k):
        return LabeledBatch(jax.random.uniform(k, (tasks, steps, META_EXAMPLES, arch.input_dim)), labels)

    return TruncationData(jax.random.uniform(keys[0], (tasks, steps, BATCH, arch.input_dim)),
                          batch(keys[1]), batch(keys[2]))


# ---------------------------------------------------------------- 1. FLOP/s

def matmul_flops_per_second(size: int = 1024, dtype: str = "fp32") -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), DTYPES[dtype])
    fn = compiled(lambda a: a @ a, a)
    return flops_of(fn) / best_seconds(fn, a)


def inner_step_flops_per_second(rule_name: str, tasks: int, steps: int = 10,
                                scan_unroll: int = 1) -> tuple[float, float, float]:
    """(FLOP/s of K inner steps in a scan, FLOP/s of one standalone jitted step, FLOPs per step), vmapped
    over `tasks` tasks; `scan_unroll` steps per loop iteration (`lax.scan(unroll=)`)."""
    rule = build_rule(rule_name)
    theta = rule.init_theta(jax.random.PRNGKey(0))
    states = TruncatedUnroll(rule, build_objective()).init(jax.random.PRNGKey(1), DEFAULT_ARCH, tasks)
    xs = fake_data(jax.random.PRNGKey(2), tasks, steps).unlabelled
    keys = jax.random.split(jax.random.PRNGKey(3), (tasks, steps))

    def one_step(theta, states, x, key):
        return jax.vmap(rule.inner_step, in_axes=(None, 0, 0, 0))(theta, states, x, key)

    def run(theta, states, xs, keys):
        def body(states, inputs):
            return one_step(theta, states, *inputs), None
        return jax.lax.scan(body, states, (jnp.swapaxes(xs, 0, 1), jnp.swapaxes(keys, 0, 1)),
                            unroll=scan_unroll)[0]

    standalone = compiled(one_step, theta, states, xs[:, 0], keys[:, 0])
    step_flops = flops_of(standalone)
    standalone_seconds = best_seconds(standalone, theta, states, xs[:, 0], keys[:, 0])
    seconds = best_seconds(compiled(run, theta, states, xs, keys), theta, states, xs, keys) / steps
    return step_flops / seconds, step_flops / standalone_seconds, step_flops


def section_flops(args) -> None:
    print("\n1. inner-step FLOP/s ÷ jitted matmul FLOP/s "
          f"(arch {DEFAULT_ARCH.input_dim}-{'-'.join(map(str, DEFAULT_ARCH.widths))}, batch {BATCH}; goal ≥ 30 %)")
    size = OPTIONS["matmul_size"]
    peaks = {}
    for dtype in OPTIONS["matmul_dtypes"]:
        peaks[dtype] = matmul_flops_per_second(size, dtype)
        label = "float32" if dtype == "fp32" else dtype
        print(f"   jitted {size}×{size} {label} matmul: {peaks[dtype] / 1e9:.1f} GFLOP/s")
    for name in rules_to_measure():
        for tasks in sorted({1, RULE_SIZES[name][0]}):
            for scan_unroll in OPTIONS["scan_unroll"]:
                rate, standalone, step_flops = inner_step_flops_per_second(
                    name, tasks, OPTIONS["steps"] or RULE_SIZES[name][1], scan_unroll)
                others = "".join(f"  {d} {rate / peak:6.1%}" for d, peak in peaks.items() if d != "fp32")
                first = f"ratio {rate / peaks['fp32']:6.1%}" if "fp32" in peaks else "ratio"
                alone = f" (standalone step {standalone / peaks['fp32']:6.1%})" if "fp32" in peaks else ""
                print(f"   {name:13s} T={tasks:<3d} scan unroll={scan_unroll:<2d} "
                      f"{step_flops / tasks / 1e6:7.1f} MFLOP/step/task  {rate / 1e9:6.1f} GFLOP/s  {first}{others}"
                      f"{alone}  scan ÷ standalone {rate / standalone:5.2f}")


# ---------------------------------------------------------------- 2. gradient ÷ forward

def grad_and_forward_fns(unroll: TruncatedUnroll):
    def forward(theta, states, data, key):
        return unroll.batch_loss(theta, states, data, key)

    def gradient(theta, states, data, key):
        return jax.value_and_grad(unroll.batch_loss, has_aux=True)(theta, states, data, key)

    return forward, gradient


def section_gradient_ratio(args) -> None:
    print("\n2. meta-gradient ÷ forward-only unroll (default arch; goal ≤ 4×)")
    for name, (variant, fields) in [(n, v) for n in rules_to_measure() for v in gradient_variants(n)]:
        rule = build_rule(name, **fields)
        steps = OPTIONS["steps"] or RULE_SIZES[name][1]
        for tasks in OPTIONS["tasks"] or (min(4, RULE_SIZES[name][0]),):
            for remat, scan_unroll in [(r, u) for r in remat_choices((False, True)) for u in OPTIONS["scan_unroll"]]:
                label = f"   {name}{variant:13s} T={tasks} K={steps:<3d} remat={str(remat):5s}"
                label += f" unroll={scan_unroll}" if OPTIONS["scan_unroll"] != (1,) else ""
                try:
                    unroll = TruncatedUnroll(rule, build_objective(), remat, scan_unroll)
                    theta = rule.init_theta(jax.random.PRNGKey(0))
                    states = unroll.init(jax.random.PRNGKey(1), DEFAULT_ARCH, tasks)
                    inputs = (theta, states, fake_data(jax.random.PRNGKey(2), tasks, steps), jax.random.PRNGKey(3))
                    forward, gradient = grad_and_forward_fns(unroll)
                    forward, gradient = compiled(forward, *inputs), compiled(gradient, *inputs)
                    if reason := too_big(gradient):
                        print(f"{label} skipped: the gradient {reason}")
                        continue
                    t_forward = best_seconds(forward, *inputs, repeats=3)
                    t_gradient = best_seconds(gradient, *inputs, repeats=3)
                except Exception as error:  # e.g. out of device memory: the other cells still run
                    print(f"{label} failed: {failure(error)}")
                    continue
                print(f"{label} forward {t_forward * 1e3:8.1f} ms  "
                      f"gradient {t_gradient * 1e3:8.1f} ms  ratio {t_gradient / t_forward:5.2f}×")


# ---------------------------------------------------------------- 3. memory vs K

def section_memory(args) -> None:
    lengths = OPTIONS["lengths"]
    print("\n3. compiled temp memory of one task's meta-gradient vs K (default arch; "
          "memory ∝ K^exponent)")
    for name, (variant, fields) in [(n, v) for n in rules_to_measure() for v in gradient_variants(n)]:
        rule = build_rule(name, **fields)
        for remat in (False, True):
            unroll = TruncatedUnroll(rule, build_objective(), remat)
            theta = rule.init_theta(jax.random.PRNGKey(0))
            states = unroll.init(jax.random.PRNGKey(1), DEFAULT_ARCH, 1)
            _, gradient = grad_and_forward_fns(unroll)
            sizes = []
            for steps in lengths:
                data = jax.eval_shape(lambda: fake_data(jax.random.PRNGKey(2), 1, steps))
                memory = jax.jit(gradient).lower(theta, states, data, jax.random.PRNGKey(3)).compile()
                sizes.append(memory.memory_analysis().temp_size_in_bytes)
            exponent = math.log(sizes[-1] / sizes[0]) / math.log(lengths[-1] / lengths[0])
            late = math.log(sizes[-1] / sizes[-2]) / math.log(lengths[-1] / lengths[-2])
            cells = "  ".join(f"K={k}: {s / 2**20:8.1f} MiB" for k, s in zip(lengths, sizes))
            print(f"   {name}{variant:13s} remat={str(remat):5s} {cells}  exponent {exponent:.2f} "
                  f"(K 50→200: {late:.2f})")


# ---------------------------------------------------------------- 4. compile share of a run

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


def digits_run(workdir: str, seconds: float, cache: bool) -> dict:
    """Meta-train the digits for `seconds`; report compile and total seconds (runs in a child)."""
    from metaplastic.core import config as config_lib
    from metaplastic.core.trainer import MetaTrainer

    compile_seconds = [0.0]

    def listen(event, duration, **_):
        if event in COMPILE_EVENTS:
            compile_seconds[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    start = time.perf_counter()
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py"),
                                [("num_steps", "1000000"), ("compilation_cache", str(cache)),
                                 ("checkpoint_every", "1000000")])
    summary = MetaTrainer(config, workdir).run(progress=False, max_seconds=seconds)
    return {"compile": compile_seconds[0], "total": time.perf_counter() - start, "steps": summary["steps"]}


def section_compile(args) -> None:
    seconds = args.minutes * 60
    print(f"\n4. compile seconds ÷ total seconds, digits meta-training for {args.minutes:g} min "
          "(goal ≤ 10 %)")
    with tempfile.TemporaryDirectory() as tmp:
        for label, cache, duration in (("cold cache", True, seconds), ("warm cache", True, seconds),
                                       ("no cache", False, min(seconds, 60))):
            workdir = os.path.join(tmp, "warm" if label == "warm cache" else label.replace(" ", "_"))
            if label == "warm cache":  # a new process reusing the cold run's cache
                import shutil
                shutil.copytree(os.path.join(tmp, "cold_cache", "compilation_cache"),
                                os.path.join(workdir, "compilation_cache"))
            child = subprocess.run([sys.executable, __file__, "--digits-run", workdir, str(duration),
                                    str(cache)], capture_output=True, text=True)
            if child.returncode:
                print(f"   {label}: failed\n{child.stderr[-2000:]}")
                continue
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"   {label:10s} {result['steps']:5d} steps  compile {result['compile']:6.1f} s of "
                  f"{result['total']:6.1f} s  ratio {result['compile'] / result['total']:6.1%}")
            if label == "no cache":
                break


# ---------------------------------------------------------------- 5. vectorisation gain

def section_vectorisation(args) -> None:
    from metaplastic.core import config as config_lib
    from metaplastic.plugins.gradient_estimators.truncated_backprop import _loss_and_grad

    steps = OPTIONS["steps"] or 10
    if args.vectorise_rule:  # the named rule at the default architecture and batch (as sections 1-3)
        rule, objective, arch, batch = build_rule(args.vectorise_rule), build_objective(), DEFAULT_ARCH, BATCH
        shapes = f"{args.vectorise_rule} at the shapes of sections 1-3"
    else:
        config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py"))
        components = config_lib.build_components(config)
        rule, objective = components.rule, components.objective
        arch = Architecture(components.family.input_dim, OPTIONS["digits_widths"])
        batch = OPTIONS["digits_batch"] or config.batch_size
        shapes = "digits shapes"
    remats = remat_choices((False,))
    print(f"\n5. meta-gradient tasks/s vs meta-batch T on one device ({shapes}: "
          f"arch {arch.input_dim}-{'-'.join(map(str, arch.widths))}, batch {batch}, K={steps})")
    theta = rule.init_theta(jax.random.PRNGKey(0))
    for remat in remats:
        unroll = TruncatedUnroll(rule, objective, remat)
        base = None
        for tasks in OPTIONS["tasks"] or (1, 4, 16, 64):
            label = f"   T={tasks:<3d}" + (f" remat={str(remat):5s}" if len(remats) > 1 or remat else "")
            try:
                states = unroll.init(jax.random.PRNGKey(1), arch, tasks)
                data = fake_data(jax.random.PRNGKey(2), tasks, steps, arch)
                data = data._replace(unlabelled=data.unlabelled[:, :, :batch])
                key = jax.random.PRNGKey(3)
                if jax.devices()[0].memory_stats():  # an accelerator: compile first, skip what cannot fit
                    step = _loss_and_grad.lower(unroll, theta, states, data, key).compile()
                    if reason := too_big(step):
                        print(f"{label} skipped: {reason}")
                        continue
                    seconds = best_seconds(step, theta, states, data, key, repeats=3)
                else:
                    seconds = best_seconds(lambda *a: _loss_and_grad(unroll, *a), theta, states, data, key,
                                           repeats=3)
            except Exception as error:  # e.g. out of device memory: the other meta-batch sizes still run
                print(f"{label} failed: {failure(error)}")
                continue
            rate = tasks / seconds
            base = base or rate
            print(f"{label} {seconds * 1e3:8.1f} ms/step  {rate:7.1f} tasks/s  gain ×{rate / base:5.2f}")


# ---------------------------------------------------------------- 6. profile of the hot path

def _scan_seconds(fn, params, carry, steps: int = 2) -> tuple[float, float]:
    """(forward, gradient) seconds of `steps` applications of carry ← fn(params, carry) inside a scan."""
    def loop(params, carry):
        out = jax.lax.scan(lambda c, _: (fn(params, c), None), carry, None, length=steps)[0]
        return jnp.sum(jnp.sin(out))  # a non-linear read-out, so no part of the graph is trivial
    forward = compiled(loop, params, carry)
    gradient = compiled(jax.grad(loop, argnums=(0, 1)), params, carry)
    return best_seconds(forward, params, carry, repeats=3), best_seconds(gradient, params, carry, repeats=3)


def section_profile(args) -> None:
    """Each part of metz2019's inner step, forward and gradient, inside a scan as in meta-training."""
    from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm
    from metaplastic.plugins.update_rules.metz2019 import Metz2019Rule, conv1d

    rule = Metz2019Rule(base_model=MLPBatchNorm())
    theta = rule.init_theta(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    units, hidden = 128, rule.compute_h_size
    x = jax.random.normal(keys[0], (BATCH, units))
    d = jax.random.normal(keys[1], (BATCH, units, rule.delta_dim))
    w = 0.01 * jax.random.normal(keys[2], (units, units))
    h = jax.random.normal(keys[3], (BATCH, units, hidden))
    kernel = 0.1 * jax.random.normal(keys[0], (3, hidden, hidden))

    def xla_conv(a, kernel, axis):
        layout = ("WNC", "WIO", "WNC") if axis == 0 else ("NWC", "WIO", "NWC")
        return jax.lax.conv_general_dilated(a, kernel, (1,), [(1, 1)], dimension_numbers=layout)

    parts = {
        "conv, batch axis (XLA conv)": (lambda k, a: jax.nn.relu(xla_conv(a, k, 0)), kernel, h),
        "conv, batch axis (matmul)": (lambda k, a: jax.nn.relu(conv1d(a, k, 0)), kernel, h),
        "conv, unit axis (XLA conv)": (lambda k, a: jax.nn.relu(xla_conv(a, k, 1)), kernel, h),
        "conv, unit axis (matmul)": (lambda k, a: jax.nn.relu(conv1d(a, k, 1)), kernel, h),
        "top-down net, 32 units": (lambda p, c: c + 1e-3 * jnp.mean(rule.top_delta(p, c), -1),
                                   theta["top_delta"], x[:, :32]),
        "unit state, 128 units": (lambda p, c: c + 1e-3 * jnp.mean(rule.unit_state(p, c, c, d, c[0], w, w), -1),
                                  theta["unit_state"], x),
        "weight change, 128×128": (lambda p, c: c + 1e-3 * rule.weight_change(p, c, h, h, x, x),
                                   theta["forward"], w),
    }
    print(f"\n6. profile: parts of metz2019's inner step, 2 steps inside a scan (batch {BATCH})")
    for name, (fn, params, carry) in parts.items():
        forward, gradient = _scan_seconds(fn, params, carry)
        print(f"   {name:28s} forward {forward * 1e3:8.1f} ms  gradient {gradient * 1e3:8.1f} ms  "
              f"ratio {gradient / forward:5.1f}×")


TINY_ARCH, TINY_BATCH = Architecture(6 * 6, (16, 16, 8)), 16


def configure(parser, args) -> None:
    """Fill OPTIONS (and, with --tiny, the shapes) from the command line."""
    global DEFAULT_ARCH, BATCH

    def ints(text, flag):
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            values = ()
        if not values or min(values) < 1:
            parser.error(f"{flag}: '{text}' is not a comma list of positive integers")
        return values

    if args.rules:
        OPTIONS["rules"] = tuple(r.strip() for r in args.rules.split(",") if r.strip())
        unknown = [r for r in OPTIONS["rules"] if r not in RULE_SIZES]
        if unknown or not OPTIONS["rules"]:
            parser.error(f"--rules: '{args.rules}' (known: {', '.join(RULE_SIZES)})")
    if args.tasks:
        OPTIONS["tasks"] = ints(args.tasks, "--tasks")
    if args.steps is not None:
        if args.steps < 1:
            parser.error(f"--steps: {args.steps} (at least 1)")
        OPTIONS["steps"] = args.steps
    OPTIONS["remat"] = args.remat
    OPTIONS["scan_unroll"] = ints(args.scan_unroll, "--scan-unroll")
    OPTIONS["gradients"] = args.gradients
    OPTIONS["matmul_size"] = args.matmul_size or (256 if args.tiny else 1024)
    dtypes = tuple(d.strip() for d in args.matmul_dtypes.split(",") if d.strip())
    if not dtypes or any(d not in DTYPES for d in dtypes):
        parser.error(f"--matmul-dtypes: '{args.matmul_dtypes}' (known: {', '.join(DTYPES)})")
    OPTIONS["matmul_dtypes"] = dtypes
    if args.tiny:
        DEFAULT_ARCH, BATCH = TINY_ARCH, TINY_BATCH
        OPTIONS.update(lengths=(2, 4, 8), digits_widths=(16, 16, 8), digits_batch=16)


SECTIONS = {1: section_flops, 2: section_gradient_ratio, 3: section_memory, 4: section_compile,
            5: section_vectorisation, 6: section_profile}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the section-4 training run")
    parser.add_argument("--sections", default="1,2,3,4,5,6")
    parser.add_argument("--rules", help="comma list: the rules of sections 1-3 (default: "
                        f"{', '.join(RULE_SIZES)}, those registered)")
    parser.add_argument("--tasks", help="comma list of meta-batch sizes T for sections 2 and 5 "
                        "(default: min(4, the rule's T) in 2; 1,4,16,64 in 5)")
    parser.add_argument("--steps", type=int, help="inner steps K per truncation in sections 1, 2 and 5 "
                        "(default: 10 for simple_local, 4 for metz2019 in 1-2; 10 in 5)")
    parser.add_argument("--gradients", choices=("hand", "plain", "both"), default="plain",
                        help="metz2019's normalisation backward passes in sections 2 and 3: JAX's autodiff (plain, the "
                             "rule's default), hand-written (hand), or both side by side")
    parser.add_argument("--remat", choices=("both", "on", "off"),
                        help="remat in sections 2 and 5 (default: both in 2, off in 5)")
    parser.add_argument("--vectorise-rule", metavar="RULE",
                        help="section 5 measures this rule at the default architecture and batch "
                             "instead of the digits's rule and shapes")
    parser.add_argument("--scan-unroll", default="1",
                        help="comma list of inner steps per scan iteration (lax.scan's unroll) in sections 1 and 2")
    parser.add_argument("--matmul-size", type=int, help="n of section 1's n×n matmul probe (default 1024; 256 with --tiny)")
    parser.add_argument("--matmul-dtypes", default="fp32",
                        help="comma list of fp32, bf16: the matmul rates section 1 compares with")
    parser.add_argument("--tiny", action="store_true",
                        help=f"every shape shrunk for a smoke test: arch {TINY_ARCH.input_dim}-"
                             f"{'-'.join(map(str, TINY_ARCH.widths))}, batch {TINY_BATCH}, 256×256 matmul, "
                             "K = 2, 4, 8 in section 3, digits widths 16-16-8 and batch 16 in section 5")
    parser.add_argument("--digits-run", nargs=3, metavar=("WORKDIR", "SECONDS", "CACHE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.digits_run:
        workdir, seconds, cache = args.digits_run
        print(json.dumps(digits_run(workdir, float(seconds), cache == "True")))
        return
    configure(parser, args)
    print(f"devices: {jax.devices()}  (cpu count {os.cpu_count()})")
    for number in (int(s) for s in args.sections.split(",")):
        SECTIONS[number](args)


if __name__ == "__main__":
    main()
