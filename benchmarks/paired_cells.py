"""Paired differences between two methods' evaluation cells (same dataset, steps, shots and seed).

Reads the cell stores that `metaplastic evaluate` / `benchmarks/bench_recipes.py` leave in their
workdirs (`<workdir>/cells/*.json`) and prints, per (dataset, steps), the mean ± SE over seeds of
(method A − method B) with the seeds matched, and how many cells were paired; with more than one
architecture in the stores (an architectures study), one row per architecture too:

    python benchmarks/paired_cells.py /work/runs/recipes/genome.eval:learned \
        /work/runs/recipes/baselines.eval:hebbian --readout ridge
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys


def cells(spec: str, readout: str) -> dict[tuple, float]:
    folder, _, method = spec.rpartition(":")
    out = {}
    for path in sorted(pathlib.Path(folder, "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        key = cell["key"]
        if key["method"] != method or readout not in cell.get("accuracy", {}):
            continue
        arch = tuple(key.get("arch", ()))
        out[(key["dataset_used"], key["dataset"].get("image_size", 0), arch, key["steps"], key["shots"],
             key["seed_index"])] = cell["accuracy"][readout]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", help="WORKDIR:METHOD")
    parser.add_argument("second", help="WORKDIR:METHOD")
    parser.add_argument("--readout", default="ridge")
    args = parser.parse_args(argv)
    a, b = cells(args.first, args.readout), cells(args.second, args.readout)
    groups: dict[tuple, list[float]] = {}
    for key in sorted(set(a) & set(b)):
        groups.setdefault(key[:5], []).append(a[key] - b[key])
    print(f"| dataset | size | network | steps | shots | {args.first} − {args.second} (paired mean ± SE) "
          "| seeds | > 2 SE |")
    print("|---|---|---|---|---|---|---|---|")
    for (dataset, size, arch, steps, shots), diffs in groups.items():
        n = len(diffs)
        mean = sum(diffs) / n
        se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else float("nan")
        verdict = "above" if mean > 2 * se else ("below" if mean < -2 * se else "level")
        print(f"| {dataset} | {size or ''} | {'×'.join(map(str, arch))} | {steps} | {shots} | {mean:+.3f} ± {se:.3f} | {n} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
