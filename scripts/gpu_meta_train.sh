#!/usr/bin/env bash
# Continue a meta-training run from a snapshot for a few minutes: made for short GPU slots
# (~10 minutes now and then), and it runs the same way on a CPU.
#
#   scripts/gpu_meta_train.sh SNAPSHOT OUT_DIR [MINUTES=8] [CONFIG=experiments/train/glyphs.py:metz2019]
#                             [--config.FIELD=VALUE ...]
#   scripts/gpu_meta_train.sh --setup        # only the set-up below
#
# 1. Set-up, in the repository root: creates .venv if missing, `pip install -q -e .` (skipped when
#    .venv/.gpu_meta_train.installed says it was done for this pyproject.toml), and where `nvidia-smi`
#    works and JAX does not see the GPU yet, `pip install -q -U "jax[cuda12]==V"` with V the jax
#    version already installed (pyproject asks for jax>=0.4.30; keeping V keeps jax, jaxlib and the
#    CUDA plugin one version). Prints JAX's devices. GPU_SETUP=0 skips the pip steps (a machine
#    without a package index, with a ready .venv).
# 2. `metaplastic train --config CONFIG --workdir OUT_DIR/work --no-progress
#    --config.init_snapshot=SNAPSHOT --config.time_limit_seconds=MINUTES*60 [overrides]`: the loop
#    stops (and saves) after MINUTES of wall time; set-up and start-up come on top. If OUT_DIR/work
#    already holds checkpoints (an interrupted slot), the run resumes those and SNAPSHOT is not read.
# 3. Writes OUT_DIR/snapshot.npz (`metaplastic snapshot`, the next slot's SNAPSHOT), copies
#    metrics.csv to OUT_DIR, and prints θ-steps/s (steps logged ÷ their summed seconds, the
#    session's first step, which holds the compile, left out) and the step reached.
#
# Everything it writes goes under OUT_DIR (train.log too; the compilation cache is
# OUT_DIR/work/compilation_cache unless --config.compilation_cache_dir=DIR points elsewhere,
# e.g. a folder kept between slots). Next slot:
#   scripts/gpu_meta_train.sh OUT_DIR/snapshot.npz OUT_DIR2
set -euo pipefail

USAGE="usage: scripts/gpu_meta_train.sh SNAPSHOT OUT_DIR [MINUTES=8] [CONFIG=experiments/train/glyphs.py:metz2019] [--config.FIELD=VALUE ...] (or --setup, --help)"
die() { echo "gpu_meta_train.sh: $*" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"

setup() {
    cd "$ROOT"
    if [[ ! -x "$PY" ]]; then
        echo "== creating .venv"
        python3 -m venv .venv
    fi
    local stamp=.venv/.gpu_meta_train.installed wanted
    wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $ROOT"
    if [[ "${GPU_SETUP:-1}" == 0 ]]; then
        echo "== GPU_SETUP=0: no pip steps"
    elif [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] && "$PY" -c "import metaplastic" 2>/dev/null; then
        echo "== metaplastic already installed in .venv for this pyproject.toml"
    else
        echo "== pip install -q -e ."
        if "$PY" -m pip install -q -e .; then
            echo "$wanted" > "$stamp"
        else
            "$PY" -c "import metaplastic" 2>/dev/null || die "pip install -e . failed and metaplastic is not installed"
            echo "warning: pip install -e . failed; using the metaplastic already installed in .venv" >&2
        fi
    fi
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/GPU: /'
        if "$PY" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
            echo "== JAX already sees the GPU"
        elif [[ "${GPU_SETUP:-1}" != 0 ]]; then
            local version
            version="$("$PY" -c 'import importlib.metadata as m; print(m.version("jax"))')"
            echo "== pip install -q -U \"jax[cuda12]==$version\""
            "$PY" -m pip install -q -U "jax[cuda12]==$version" \
                || echo "warning: installing jax[cuda12]==$version failed; JAX may run on the CPU" >&2
        fi
    fi
    "$PY" -c 'import jax; print(f"JAX {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")'
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
            && ! "$PY" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
        echo "warning: nvidia-smi sees a GPU but JAX runs on $("$PY" -c 'import jax; print(jax.default_backend())')" >&2
    fi
}

case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --setup) [[ $# -eq 1 ]] || die "$USAGE"; setup; exit 0 ;;
esac
[[ $# -ge 2 && "$1" != -* && "$2" != -* ]] || die "$USAGE"
SNAPSHOT="$1"; OUT="$2"; shift 2
MINUTES=8
CONFIG="experiments/train/glyphs.py:metz2019"
if [[ $# -gt 0 && "$1" != --* ]]; then MINUTES="$1"; shift; fi
if [[ $# -gt 0 && "$1" != --* ]]; then CONFIG="$1"; shift; fi
[[ $# -eq 0 || "$1" == --config.* ]] || die "'$1': expected --config.FIELD=VALUE overrides after CONFIG. $USAGE"
OVERRIDES=("$@")
[[ "$MINUTES" =~ ^[0-9]*\.?[0-9]+$ ]] && awk -v m="$MINUTES" 'BEGIN { exit !(m > 0) }' \
    || die "MINUTES '$MINUTES' is not a positive number. $USAGE"
[[ -f "$SNAPSHOT" ]] || die "SNAPSHOT '$SNAPSHOT' is not a file (make one with: metaplastic snapshot WORKDIR FILE)"

# absolute paths: the run happens in the repository root
SNAPSHOT="$(cd "$(dirname "$SNAPSHOT")" && pwd)/$(basename "$SNAPSHOT")"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
config_file="${CONFIG%%:*}"
if [[ -f "$config_file" && "$config_file" != /* ]]; then  # relative to the caller's folder
    CONFIG="$(cd "$(dirname "$config_file")" && pwd)/$(basename "$config_file")${CONFIG#"$config_file"}"
fi
WORK="$OUT/work"
LIMIT="$(awk -v m="$MINUTES" 'BEGIN { printf "%g", m * 60 }')"
started=$SECONDS

setup
cd "$ROOT"

START_STEP=""
FROM_SNAPSHOT=(--config.init_snapshot="$SNAPSHOT")  # a workdir with checkpoints refuses a new start
if [[ -d "$WORK/checkpoints" ]]; then  # the steps the trainer would resume, as the library lists them
    START_STEP="$("$PY" -c 'import sys; from metaplastic.core.rules import checkpoint_steps
print((checkpoint_steps(sys.argv[1]) or [""])[-1])' "$WORK")"
fi
if [[ -n "$START_STEP" ]]; then
    echo "== $WORK holds checkpoints (newest step $START_STEP): resuming them; SNAPSHOT is not read"
    FROM_SNAPSHOT=()
else
    START_STEP="$("$PY" -c 'import sys; from metaplastic.core.snapshot import read_meta; print(read_meta(sys.argv[1])["step"])' "$SNAPSHOT")" \
        || die "'$SNAPSHOT' is not a readable metaplastic snapshot"
    echo "== continuing $SNAPSHOT (step $START_STEP)"
fi

echo "== metaplastic train --config $CONFIG --workdir $WORK for $MINUTES min (${LIMIT} s) ${OVERRIDES[*]-}"
TRAIN_STARTED=$SECONDS
"$ROOT/.venv/bin/metaplastic" train --config "$CONFIG" --workdir "$WORK" --no-progress \
    ${FROM_SNAPSHOT[@]+"${FROM_SNAPSHOT[@]}"} --config.time_limit_seconds="$LIMIT" \
    ${OVERRIDES[@]+"${OVERRIDES[@]}"} 2>&1 | tee "$OUT/train.log"
TRAIN_SECONDS=$((SECONDS - TRAIN_STARTED))

"$ROOT/.venv/bin/metaplastic" snapshot "$WORK" "$OUT/snapshot.npz"
cp "$WORK/metrics.csv" "$OUT/metrics.csv"

"$PY" - "$OUT/metrics.csv" "$START_STEP" "$TRAIN_SECONDS" <<'EOF'
import pathlib
import statistics
import sys

from metaplastic.core.metrics import read_metrics

path, start, train_seconds = pathlib.Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rows = [row for row in read_metrics(path.parent) if row["step"] > start]
if not rows:
    sys.exit(f"no θ-step was logged after step {start} (see train.log)")
reached = int(float(rows[-1]["step"]))
first, rest = rows[0], rows[1:]
seconds = [float(row["seconds"]) for row in rest]
print(f"step reached: {reached} (this session: steps {start + 1}-{reached}, first step {float(first['seconds']):.1f} s "
      "with its compile)")
if seconds and sum(seconds) > 0:
    print(f"θ-steps/s: {len(seconds) / sum(seconds):.3f} ({len(seconds)} logged θ-steps after the first in "
          f"{sum(seconds):.1f} s; median {statistics.median(seconds):.3f} s, slowest {max(seconds):.2f} s)")
else:
    print("θ-steps/s: n/a (only the first step, which holds the compile, ran)")
if train_seconds > 0:
    print(f"wall θ-steps/s: {len(rows) / train_seconds:.3f} ({len(rows)} θ-steps in {train_seconds:.0f} s of "
          "`metaplastic train`: start-up, compile, checkpoints and logging included)")
EOF
echo "wrote $OUT/snapshot.npz, $OUT/metrics.csv, $OUT/train.log ($((SECONDS - started)) s in all)"
