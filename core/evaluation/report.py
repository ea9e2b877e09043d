"""A finished study's results: mean ± standard error over seeds, the primary method against each
baseline paired by seed, results.json / results.csv / report.md, and the pictures."""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib

import numpy as np

from metaplastic.core.ops.files import write_atomic

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
    """Primary method minus each other method, paired by seed: mean ± standard error."""
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
                verdict = "wins" if mean > margin else "loses" if mean < -margin else "ties"
                out.append(dict(dataset=dataset, arch=arch, steps=steps, shots=shots, readout=readout,
                                baseline=other, difference=mean, se=se, n=len(seeds), verdict=verdict,
                                primary_mean=float(np.mean([methods[primary][s][readout] for s in seeds])),
                                baseline_mean=float(np.mean([accuracies[s][readout] for s in seeds]))))
    return out


def write_results(config, workdir: pathlib.Path, records, methods, datasets, status, store) -> dict:
    """results.json, results.csv, report.md and the pictures of a finished study; returns the results."""
    from metaplastic.core.evaluation.runner import _canonical  # the runner imports this module

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
    write_atomic(workdir / "results.json", json.dumps(_canonical(results), indent=1).encode())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary)
    write_atomic(workdir / "results.csv", text.getvalue().encode())
    write_atomic(workdir / "report.md", report_markdown(config, results).encode())
    return results


FEATURE_NOTE = ("Features use batch statistics: labelled and test examples pass through the model "
                "together (one batch of up to feature_batch examples, else test chunks each with the "
                "labelled examples).")


def _fmt(mean, se):
    return f"{mean:.3f} ± {se:.3f}" if se == se else f"{mean:.3f}"


def _varying(summary, fields):
    return [f for f in fields if len({row[f] for row in summary}) > 1]


def report_markdown(config, results) -> str:
    summary, comparisons, primary = results["summary"], results["comparisons"], results["primary"]
    lines = [f"# Evaluation: {config.name}", ""]
    if config.description:
        lines += [config.description, ""]
    lines += [f"Test accuracy, mean ± standard error over {config.seeds} seeds (each seed: its own input "
              "permutation, data order, initialisation, labelled examples and test subset). "
              f"Unsupervised batch size {config.batch_size}; representation width {config.top_width}; "
              f"readouts: {', '.join(config.readouts)} (ridge λ={config.ridge_lambda}, logistic C="
              f"{config.logistic_c} on standardised features).", "", FEATURE_NOTE, "", "## Methods", ""]
    lines += [f"- **{label}**: {text}" for label, text in results["methods"].items()]
    lines += ["", "## Datasets", ""]
    lines += [f"- **{label}**: {text}" for label, text in results["datasets"].items()]
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
    lines += [f"## {primary} against each baseline", "",
              "Paired by seed; 'wins'/'loses' when the mean difference exceeds two standard errors.", "",
              "| baseline | wins | ties | loses |", "|---|---|---|---|"]
    for baseline in dict.fromkeys(c["baseline"] for c in comparisons):
        verdicts = [c["verdict"] for c in comparisons if c["baseline"] == baseline]
        lines.append(f"| {baseline} | {verdicts.count('wins')} | {verdicts.count('ties')} | "
                     f"{verdicts.count('loses')} |")
    losses = [c for c in comparisons if c["verdict"] == "loses"]
    lines += ["", f"### Where {primary} loses", ""]
    if not losses:
        lines.append("Nowhere by more than two standard errors.")
    for c in losses:
        lines.append(f"- to **{c['baseline']}** on {c['dataset']} ({c['arch']}, {c['steps']} steps, "
                     f"{c['shots']} shots, {c['readout']}): {c['primary_mean']:.3f} vs "
                     f"{c['baseline_mean']:.3f} (difference {_fmt(c['difference'], c['se'])})")
    return "\n".join(lines) + "\n"


def _main_value(values, preferred):
    values = sorted(set(values))
    return preferred if preferred in values else values[-1]


def make_pictures(config, workdir, summary, records, methods, datasets, store) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pictures = {}
    method_order = list(methods)
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(method_order)}
    readouts = tuple(config.readouts)
    main_shots = _main_value([r["shots"] for r in summary], config.main_shots)
    main_steps = max(r["steps"] for r in summary)
    archs = list(dict.fromkeys(r["arch"] for r in summary))
    main_arch = archs[0]
    dataset_order = list(dict.fromkeys(r["dataset"] for r in summary))

    def rows(**match):
        return [r for r in summary if all(r[k] == v for k, v in match.items())]

    def save(fig, name, title):
        if not fig.legends:
            fig.tight_layout()
        fig.savefig(workdir / name, dpi=110)
        plt.close(fig)
        pictures[title] = name

    if len(dataset_order) > 1:
        fig, axes = plt.subplots(1, len(readouts), figsize=(max(6, 1.6 * len(dataset_order)) * len(readouts), 4),
                                 squeeze=False)
        width = 0.8 / len(method_order)
        for ax, readout in zip(axes[0], readouts):
            for i, method in enumerate(method_order):
                values = [rows(dataset=d, method=method, readout=readout, shots=main_shots,
                               steps=main_steps, arch=main_arch) for d in dataset_order]
                means = [v[0]["mean"] if v else np.nan for v in values]
                errs = [v[0]["se"] if v else 0 for v in values]
                ax.bar(np.arange(len(dataset_order)) + (i - (len(method_order) - 1) / 2) * width, means,
                       width, yerr=errs, capsize=2, label=method, color=colours[method])
            ax.set_xticks(np.arange(len(dataset_order)), dataset_order, rotation=20)
            ax.set_ylabel("test accuracy")
            ax.set_title(f"{readout} readout, {main_shots} shots, {main_steps} steps, {main_arch}")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        save(fig, "datasets.png", "Accuracy over datasets")

    def curves(field, name, title, log=True, fixed=None):
        fixed = fixed or {}
        fig, axes = plt.subplots(len(readouts), len(dataset_order),
                                 figsize=(4.5 * len(dataset_order), 3.5 * len(readouts)), squeeze=False)
        for row, readout in enumerate(readouts):
            for col, dataset in enumerate(dataset_order):
                ax = axes[row][col]
                for method in method_order:
                    points = sorted((r[field], r["mean"], r["se"]) for r in
                                    rows(dataset=dataset, method=method, readout=readout, **fixed))
                    if points:
                        x, m, s = map(np.asarray, zip(*points))
                        ax.errorbar(x, m, yerr=np.nan_to_num(s), marker="o", ms=3, capsize=2,
                                    label=method, color=colours[method])
                if log:
                    ax.set_xscale("symlog" if any(r[field] == 0 for r in summary) else "log")
                ax.set_xlabel(field)
                ax.set_ylabel("test accuracy")
                ax.set_title(f"{dataset}, {readout}", fontsize=9)
        axes[0][0].legend(fontsize=7)
        save(fig, name, title)

    if len({r["steps"] for r in summary}) > 1:
        curves("steps", "steps.png", "Accuracy over unsupervised steps",
               fixed={"shots": main_shots, "arch": main_arch})
    if len({r["shots"] for r in summary}) > 1:
        curves("shots", "shots.png", "Accuracy over labelled examples per class",
               fixed={"steps": main_steps, "arch": main_arch})
    if len(archs) > 1:
        depths = [r["depth"] for r in summary]
        widths = [r["width"] for r in summary]
        ref_width = max(set(widths), key=widths.count)
        ref_depth = max(set(depths), key=depths.count)
        fixed = {"shots": main_shots, "steps": main_steps}
        if len({r["depth"] for r in rows(width=ref_width)}) > 1:
            curves("depth", "depth.png", f"Accuracy over depth (width {ref_width})", log=False,
                   fixed={**fixed, "width": ref_width})
        if len({r["width"] for r in rows(depth=ref_depth)}) > 1:
            curves("width", "width.png", f"Accuracy over width (depth {ref_depth})",
                   fixed={**fixed, "depth": ref_depth})

    tiles = _filter_tiles(records, datasets, main_shots, main_steps, main_arch, method_order, store,
                          config.filters_dataset)
    if tiles:
        dataset, shape, rows_ = tiles
        columns = min(16, max(w.shape[1] for _, w in rows_))
        fig, axes = plt.subplots(len(rows_), columns, figsize=(0.8 * columns + 1.5, 0.85 * len(rows_) + 0.4),
                                 squeeze=False)
        for (label, weights), ax_row in zip(rows_, axes):
            for j, ax in enumerate(ax_row):
                ax.set_xticks([])
                ax.set_yticks([])
                if j < weights.shape[1]:
                    tile = weights[:, j].reshape(shape)
                    limit = np.abs(tile).max() + 1e-12
                    ax.imshow(tile, cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        fig.suptitle(f"first-layer filters, {dataset}, {main_steps} steps, seed 0", fontsize=9)
        save(fig, "filters.png", "First-layer filters")
    return pictures


def _filter_tiles(records, datasets, shots, steps, arch, method_order, store, preferred):
    order = sorted(datasets, key=lambda label: label != preferred)
    for dataset in order:
        data = datasets[dataset][1]
        if data.image_shape is None:
            continue
        found = {r["method"]: r["filters"] for r in records
                 if r["dataset"] == dataset and r["seed"] == 0 and r["steps"] == steps
                 and r["shots"] == shots and r["arch"] == arch and r.get("filters")}
        rows = [(m, store.filters(found[m])) for m in method_order if m in found]
        if rows:
            return dataset, data.image_shape, rows
    return None
