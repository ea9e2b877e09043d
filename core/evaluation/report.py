"""A finished study's results: mean ± standard error over seeds, the primary method against each
baseline paired by seed, results.json / results.csv / report.md, and the pictures (drawn by
`pictures`)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib
import re

import numpy as np

from metaplastic.core.evaluation.pictures import make_pictures, readable_dataset_name
from metaplastic.core.ops.files import write_atomic

# Fewer paired seeds than this and two standard errors say little (with 2 seeds the SE comes from one
# degree of freedom): the report gives the differences but declares no wins or losses.
MIN_SEEDS_FOR_VERDICT = 5
TOO_FEW = "too few seeds"

SUMMARY_FIELDS = ("dataset", "arch", "depth", "width", "steps", "shots", "readout", "method",
                  "mean", "se", "n", "non_finite")


def _mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(np.mean(values)), se


def summarise(records: list[dict], readouts) -> list[dict]:
    """Mean ± standard error over seeds for every (dataset, arch, steps, shots, readout, method)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["arch"], r["depth"], r["width"], r["steps"], r["shots"],
                           r["method"]), []).append(r)
    rows = []
    for (dataset, arch, depth, width, steps, shots, method), group in groups.items():
        for readout in readouts:
            mean, se = _mean_se([r["accuracy"][readout] for r in group])
            rows.append(dict(dataset=dataset, arch=arch, depth=depth, width=width, steps=steps,
                             shots=shots, readout=readout, method=method, mean=mean, se=se,
                             n=len(group), non_finite=sum(not r["finite"] for r in group)))
    return rows


def primary_label(config, methods) -> str:
    swept = [label for label in methods if label.startswith(config.primary_method + "@")]
    if swept:
        return max(swept, key=lambda label: int(label.rsplit("@", 1)[1]))
    return config.primary_method


def compare(records: list[dict], primary: str, readouts) -> list[dict]:
    """Primary method minus each other method, paired by seed: mean ± standard error, and a verdict
    (wins / ties / loses beyond two standard errors; TOO_FEW below MIN_SEEDS_FOR_VERDICT seeds)."""
    by_cell: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in records:
        cell = (r["dataset"], r["arch"], r["steps"], r["shots"])
        by_cell.setdefault(cell, {}).setdefault(r["method"], {})[r["seed"]] = r["accuracy"]
    out = []
    for (dataset, arch, steps, shots), methods in by_cell.items():
        if primary not in methods:
            continue
        for other, accuracies in methods.items():
            if other == primary:
                continue
            seeds = sorted(set(accuracies) & set(methods[primary]))
            for readout in readouts:
                diffs = [methods[primary][s][readout] - accuracies[s][readout] for s in seeds]
                mean, se = _mean_se(diffs)
                margin = 2 * se if se == se else 0.0
                verdict = ("wins" if mean > margin else "loses" if mean < -margin else "ties") \
                    if len(seeds) >= MIN_SEEDS_FOR_VERDICT else TOO_FEW
                out.append(dict(dataset=dataset, arch=arch, steps=steps, shots=shots, readout=readout,
                                baseline=other, difference=mean, se=se, n=len(seeds), verdict=verdict,
                                primary_mean=float(np.mean([methods[primary][s][readout] for s in seeds])),
                                baseline_mean=float(np.mean([accuracies[s][readout] for s in seeds]))))
    return out


def canonical(value):
    """`value` as plain JSON types, dict keys as sorted strings: one text for equal contents."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def write_results(config, workdir: pathlib.Path, records, methods, datasets, status, store) -> dict:
    """results.json, results.csv, report.md and the pictures of a finished study; returns the results."""
    readouts = tuple(config.readouts)
    summary = summarise(records, readouts)
    primary = primary_label(config, methods)
    comparisons = compare(records, primary, readouts)
    descriptions = {label: method.describe() for label, method in methods.items()}
    pictures = make_pictures(config, workdir, summary, records, methods, datasets, store)
    results = {"study": config.name, "description": config.description, "primary": primary,
               "methods": descriptions, "datasets": status, "config": config.to_dict(),
               "feature_statistics": FEATURE_NOTE, "summary": summary, "comparisons": comparisons,
               "pictures": pictures,
               "cells": [{k: v for k, v in r.items() if k != "filters"} for r in records]}
    write_atomic(workdir / "results.json", json.dumps(canonical(results), indent=1).encode())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary)
    write_atomic(workdir / "results.csv", text.getvalue().encode())
    write_atomic(workdir / "report.md", relative_paths(report_markdown(config, results), workdir).encode())
    return results


# an absolute path in running text (not inside a word, a URL or a relative path)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/:])/[^\s'\"()\[\],;]*[^\s'\"()\[\],;.:]")


def relative_paths(text: str, folder: pathlib.Path) -> str:
    """`text` with every absolute path that exists and shares a folder with `folder` (other than the
    root) written relative to `folder`: the report names runs as `../run_a`, so it reads the same
    on another machine or after the folders move together."""
    folder = pathlib.Path(folder).absolute()

    def relative(match):
        path = pathlib.Path(match.group(0))
        try:
            if not path.exists() or os.path.commonpath([path, folder]) == path.anchor:
                return match.group(0)
        except (OSError, ValueError):
            return match.group(0)
        return os.path.relpath(path, folder)

    return _ABSOLUTE_PATH.sub(relative, text)


FEATURE_NOTE = ("Features use batch statistics: labelled and test examples pass through the model "
                "together (one batch of up to feature_batch examples, else test chunks each with the "
                "labelled examples).")


def _fmt(mean, se):
    """'0.812 ± 0.013'; one seed (no standard error, nan): '0.812'; a standard error that rounds to
    zero: '0.812 ± <0.001' (never '± 0.000')."""
    if se != se:
        return f"{mean:.3f}"
    if se < 0.0005:
        return f"{mean:.3f} ± <0.001"
    return f"{mean:.3f} ± {se:.3f}"


def _count_text(counts) -> str:
    """{5} → '5'; {3, 5} → '3–5'."""
    counts = sorted(set(counts))
    if not counts:
        return "0"
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _used_dataset(status: str) -> str | None:
    match = re.match(r"ok: '([^']+)'", status)
    return match.group(1) if match else None


def _varying(summary, fields):
    return [f for f in fields if len({row[f] for row in summary}) > 1]


def report_markdown(config, results) -> str:
    summary, comparisons, primary = results["summary"], results["comparisons"], results["primary"]
    lines = [f"# Evaluation: {config.name}", ""]
    if config.description:
        lines += [config.description, ""]
    over = (f"mean ± standard error over {config.seeds} seeds" if config.seeds > 1 else
            "one seed, so no standard error")
    lines += [f"Test accuracy, {over} (each seed: its own input "
              "permutation, data order, initialisation, labelled examples and test subset). "
              f"Unsupervised batch size {config.batch_size}; representation width {config.top_width}; "
              f"readouts: {', '.join(config.readouts)} (ridge λ={config.ridge_lambda}, logistic C="
              f"{config.logistic_c} on standardised features).", "", FEATURE_NOTE, "", "## Methods", ""]
    lines += [f"- **{label}**: {text}" for label, text in results["methods"].items()]
    lines += ["", "## Datasets", ""]
    for label, text in results["datasets"].items():
        spec = config.datasets[label] if label in config.datasets else None
        lines.append(f"- **{label}** — {readable_dataset_name(label, spec, _used_dataset(text))}: {text}")
    for title, name in results["pictures"].items():
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    lines += ["", "## Results", ""]
    columns = _varying(summary, ("arch", "steps", "shots")) or ["steps"]
    methods = list(results["methods"])
    for dataset in dict.fromkeys(row["dataset"] for row in summary):
        for readout in config.readouts:
            rows = [r for r in summary if r["dataset"] == dataset and r["readout"] == readout]
            combos = list(dict.fromkeys(tuple(r[c] for c in columns) for r in rows))
            header = [", ".join(f"{c}={v}" for c, v in zip(columns, combo)) for combo in combos]
            lines += [f"### {dataset}, {readout} readout", "",
                      "| method | " + " | ".join(header) + " |",
                      "|---" * (len(header) + 1) + "|"]
            for method in methods:
                cells = []
                for combo in combos:
                    match = [r for r in rows if r["method"] == method and tuple(r[c] for c in columns) == combo]
                    if not match:
                        cells.append("")
                        continue
                    r = match[0]
                    flag = f" ({r['non_finite']} diverged)" if r["non_finite"] else ""
                    cells.append(_fmt(r["mean"], r["se"]) + flag)
                name = f"**{method}**" if method == primary else method
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    counts = [c["n"] for c in comparisons]
    unjudged = [c for c in comparisons if c["verdict"] == TOO_FEW]
    rule = "'wins'/'loses' when the mean difference exceeds two standard errors"
    if unjudged:
        where = "every comparison" if len(unjudged) == len(comparisons) else f"{len(unjudged)} comparisons"
        rule += (f"; {TOO_FEW} for a verdict in {where} (it needs at least {MIN_SEEDS_FOR_VERDICT}), so none "
                 f"is declared there (more seeds: --config.seeds={MIN_SEEDS_FOR_VERDICT})")
    lines += [f"## {primary} against each baseline", "",
              f"Paired by seed, n = {_count_text(counts)} seed{'s' if max(counts, default=0) != 1 else ''} "
              f"per comparison; {rule}.", "",
              "| baseline | seeds (n) | wins | ties | loses |" + (f" {TOO_FEW} |" if unjudged else ""),
              "|---" * (6 if unjudged else 5) + "|"]
    for baseline in dict.fromkeys(c["baseline"] for c in comparisons):
        mine = [c for c in comparisons if c["baseline"] == baseline]
        verdicts = [c["verdict"] for c in mine]
        lines.append(f"| {baseline} | {_count_text(c['n'] for c in mine)} | {verdicts.count('wins')} | "
                     f"{verdicts.count('ties')} | {verdicts.count('loses')} |"
                     + (f" {verdicts.count(TOO_FEW)} |" if unjudged else ""))
    losses = [c for c in comparisons if c["verdict"] == "loses"]
    lines += ["", f"### Where {primary} loses", ""]
    if not losses and comparisons and len(unjudged) == len(comparisons):
        lines.append(f"Not judged: {TOO_FEW} (n = {_count_text(counts)}; a verdict needs at least "
                     f"{MIN_SEEDS_FOR_VERDICT}).")
    elif not losses:
        lines.append("Nowhere by more than two standard errors"
                     + (" where there are enough seeds to judge." if unjudged else "."))
    for c in losses:
        lines.append(f"- to **{c['baseline']}** on {c['dataset']} ({c['arch']}, {c['steps']} steps, "
                     f"{c['shots']} shots, {c['readout']}): {c['primary_mean']:.3f} vs "
                     f"{c['baseline_mean']:.3f} (difference {_fmt(c['difference'], c['se'])})")
    return "\n".join(lines) + "\n"
