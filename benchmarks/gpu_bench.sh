#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one call (≤ 8 minutes on one GPU), reusing the sections of
# benchmarks/bench_metz2019.py and benchmarks/bench_meta_training.py:
#
#   benchmarks/gpu_bench.sh OUT_DIR [--tiny]
#
#   1_flops_step  metz2019's inner step (196→4×128→32, batch 128) FLOP/s ÷ fp32 and bf16 matmul FLOP/s,
#                 the matmul rates measured in the same process       bench_metz2019.py --skip-big
#   2_flops_scan  the same ratio for K inner steps in a scan (simple_local, metz2019)
#                                                                     bench_meta_training.py section 1
#   3_grad_ratio  metz2019 meta-gradient ÷ forward-only unroll, T = 1 and 8, K = 10, remat off and on
#                                                                     bench_meta_training.py section 2
#   4_tasks_per_s metz2019 meta-gradient tasks/s vs T = 1, 8, 64, 256 at the same shapes, K = 10, remat on
#                 (a T whose compiled gradient does not fit the device is reported as skipped)
#                                                                     bench_meta_training.py section 5
#   5_big_net     the 11 × 10,000 network (784 inputs, batch 32): seconds per inner step
#                                                                     bench_metz2019.py --skip-default
#
# Each part runs in its own process under its own `timeout`, so a slow part cannot eat the budget
# of the others; a part cut short keeps what it printed. OUT_DIR gets one log per part and
# summary.txt (machine, date, commit, load, each part's status and its figures).
#
# --tiny shrinks every shape (arch 36→16→16→8, batch 16, K = 2, T = 1 / 1,4, a 3 × 512 network,
# 256² matmuls) and turns XLA's CPU backend optimisation off to cut compile time: a smoke test that
# the script works (a few minutes on 2 CPU cores), not a figure.
#
# Python: $PYTHON, else .venv/bin/python, else python3. When nvidia-smi sees a GPU and that Python's
# JAX does not, `scripts/gpu_meta_train.sh --setup` runs first (0_setup.log; not in the 8 minutes).
# GPU_BENCH_SCALE=2 doubles every part's time limit. JAX's compilation cache is OUT_DIR/compilation_cache
# (JAX_COMPILATION_CACHE_DIR moves it): rerun into the same OUT_DIR to finish a part that timed out.
# Nothing else should run on the machine.
set -euo pipefail

USAGE="usage: benchmarks/gpu_bench.sh OUT_DIR [--tiny]"
die() { echo "gpu_bench.sh: $*" >&2; exit 2; }
case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
[[ $# -ge 1 && $# -le 2 && "$1" != -* ]] || die "$USAGE"
TINY=0
if [[ $# -eq 2 ]]; then [[ "$2" == --tiny ]] || die "'$2': $USAGE"; TINY=1; fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
cd "$ROOT"

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
if has_gpu && ! "$PY" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
    echo "== nvidia-smi sees a GPU, JAX does not: scripts/gpu_meta_train.sh --setup (log 0_setup.log)"
    timeout 600 scripts/gpu_meta_train.sh --setup > "$OUT/0_setup.log" 2>&1 || echo "warning: set-up failed (see 0_setup.log)" >&2
    PY=.venv/bin/python
fi

export PYTHONUNBUFFERED=1
# compiled programs are kept in OUT_DIR: a second run into the same OUT_DIR (a part that timed out)
# compiles less; the "compile" seconds it prints are then cache loads
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$OUT/compilation_cache}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"  # T=8 without remat needs ~75 GiB
SCALE="${GPU_BENCH_SCALE:-1}"
if [[ $TINY == 1 ]]; then
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    T="--tiny"; K=2; GRAD_TASKS=1; VEC_TASKS=1,4; MATMUL=256
    BIG=(--tiny)
    LIMITS=(60 60 120 120 60)
else
    T=""; K=10; GRAD_TASKS=1,8; VEC_TASKS=1,8,64,256; MATMUL=8192
    BIG=(--big-steps 3)  # the defaults: 11 × 10,000 on 784 inputs, batch 32
    LIMITS=(45 60 150 120 75)   # 450 s in all
fi

NAMES=(1_flops_step 2_flops_scan 3_grad_ratio 4_tasks_per_s 5_big_net)
COMMANDS=(
    "benchmarks/bench_metz2019.py --skip-big --matmul-dtypes fp32,bf16 --matmul-size $MATMUL $T"
    "benchmarks/bench_meta_training.py --sections 1 --steps $K --matmul-dtypes fp32,bf16 --matmul-size $MATMUL $T"
    "benchmarks/bench_meta_training.py --sections 2 --rules metz2019 --tasks $GRAD_TASKS --steps $K --remat both $T"
    "benchmarks/bench_meta_training.py --sections 5 --vectorise-rule metz2019 --tasks $VEC_TASKS --steps $K --remat on $T"
    "benchmarks/bench_metz2019.py --skip-default --matmul-dtypes fp32,bf16 --matmul-size $MATMUL ${BIG[*]}"
)
# the lines of each log that carry its figures
PATTERNS=(
    'devices:|jitted|architecture|FLOPs/step|compile|seconds/step|achieved|fraction'
    'jitted|T=|^1\.'
    'T=|^2\.'
    'T=|^5\.'
    'jitted|layers ×|compile|step [0-9]|best step'
)

STATUS=()
START_ALL=$SECONDS
for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    limit=$(awk -v s="$SCALE" -v l="${LIMITS[$i]}" 'BEGIN { printf "%d", s * l }')
    echo "== $name (limit ${limit} s): $PY ${COMMANDS[$i]}"
    started=$SECONDS
    rc=0
    # shellcheck disable=SC2086  # the command is a word list on purpose
    timeout --kill-after=10 "$limit" "$PY" ${COMMANDS[$i]} > "$OUT/$name.log" 2>&1 || rc=$?
    took=$((SECONDS - started))
    case $rc in
        0) state=ok ;;
        124|137) state="timed out" ;;
        *) state="failed (rc $rc)" ;;
    esac
    STATUS+=("$(printf '%-14s %-16s %4d s of %4d s   %s' "$name" "$state" "$took" "$limit" "$name.log")")
    echo "   $state in $took s"
done
TOTAL=$((SECONDS - START_ALL))

{
    echo "gpu_bench.sh$([[ $TINY == 1 ]] && echo ' --tiny: CPU/GPU smoke test, tiny shapes, not figures')"
    echo "date      $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "host      $(hostname), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 2^20 }' /proc/meminfo)"
    if has_gpu; then
        echo "gpu       $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
    else
        echo "gpu       none (nvidia-smi absent or sees no GPU)"
    fi
    echo "jax       $("$PY" -c 'import jax; print(jax.__version__, jax.devices())' 2>&1 | tail -1)"
    echo "commit    $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git status --porcelain 2>/dev/null | grep -q . && echo ' (working tree has changes)')"
    echo "load      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, after the run)"
    echo "total     $TOTAL s"
    echo
    printf '%s\n' "${STATUS[@]}"
    for i in "${!NAMES[@]}"; do
        echo
        echo "--- ${NAMES[$i]}: ${COMMANDS[$i]}"
        grep -E "${PATTERNS[$i]}" "$OUT/${NAMES[$i]}.log" | grep -v -E 'Warning|warn\(' || echo "   (no figures: see ${NAMES[$i]}.log)"
    done
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
