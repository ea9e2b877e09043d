"""Export the θ of a `metaplastic train` workdir as a rule folder that `load_rule` reads.

`export_rule(workdir, destination, step=None)` writes rule.json and theta.npz (through `save_rule`, the
one writer of rule folders), meta_training_curve.csv and .png (the metrics up to the exported step) and
meta_training_config.json (the workdir's config.json, renamed fields under their current names).
`metaplastic export` is this function.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import json
import pathlib

from metaplastic.core.errors import UserError
from metaplastic.core.metrics import read_metrics
from metaplastic.core.ops.files import write_atomic
from metaplastic.core.renamed_fields import current_config

# the columns of metrics.csv a rule folder's meta_training_curve.csv keeps
CURVE_FIELDS = ("step", "meta_loss", "skipped", "horizon", "depth", "validation_loss")
COUNT_FIELDS = ("step", "skipped", "horizon", "depth")  # written as integers where they are whole


class ExportError(UserError, ValueError):
    """A workdir, step or destination that cannot be exported."""


def metrics_until(workdir: str | os.PathLike, step: int) -> tuple[list[dict[str, float]], float | None]:
    """The metrics.csv rows of `workdir` up to θ-step `step`, and their summed seconds (None without
    metrics or without any timed row)."""
    if not (pathlib.Path(workdir) / "metrics.csv").is_file():
        return [], None
    rows = [row for row in read_metrics(workdir) if row["step"] <= step]
    seconds = [row["seconds"] for row in rows if not math.isnan(row.get("seconds", math.nan))]
    return rows, (sum(seconds) if seconds else None)


def export_rule(workdir: str | os.PathLike, destination: str | os.PathLike, step: int | str | None = None,
                recommended_steps: int | None = None, force: bool = False) -> dict:
    """Write the θ of `workdir` at `step` as a rule folder `destination`; returns
    {"step": the exported θ-step, "seconds": meta-training seconds up to it or None, "destination"}.

    step: a saved θ-step (default: the latest; 0 = the initial θ) or "best" (the best-validated θ,
        kept when config.validation.every > 0).
    recommended_steps: the inner steps `fit` and `apply_rule` default to for this rule.
    force: write into a non-empty `destination`.
    """
    from metaplastic.core.config import build
    from metaplastic.core.checkpoint import checkpoint_steps, load_rule_from_workdir, workdir_config
    from metaplastic.core.rules import load_rule, save_rule
    from metaplastic.core.validation import BEST_DIR, Validator

    workdir, target = pathlib.Path(workdir), pathlib.Path(destination)
    if not workdir.exists():
        raise ExportError(f"WORKDIR '{workdir}': does not exist (expected a `metaplastic train` workdir)")
    if not workdir.is_dir():
        raise ExportError(f"WORKDIR '{workdir}': not a directory (expected a `metaplastic train` workdir)")
    if target.exists() and not target.is_dir():
        raise ExportError(f"OUT_DIR '{target}': exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ExportError(f"OUT_DIR '{target}': not empty (use --force to write into it)")
    run_config = workdir_config(workdir)
    config = run_config.to_dict()
    extra = {}
    if step == "best":
        best = Validator.read_best(workdir)
        if best is None:
            raise ExportError(f"WORKDIR '{workdir}': no best-validated θ ({BEST_DIR}/ is written when "
                              "config.validation.every > 0)")
        theta, step = load_rule(workdir / BEST_DIR).theta, int(best["step"])
        extra["validation"] = best
    else:
        if step is None:
            step = (checkpoint_steps(workdir) or [None])[-1]  # no checkpoints/: a one-line EvaluationError
        _, theta = load_rule_from_workdir(workdir, step)  # a one-line EvaluationError for a missing step
        step = 0 if step is None else step
    rows, seconds = metrics_until(workdir, step)
    extra["meta_training_steps"] = step
    if seconds is not None:
        extra["meta_training_seconds"] = round(seconds)
    extra["exported"] = datetime.date.today().isoformat()
    save_rule(target, config, theta, extra=extra, recommended_steps=recommended_steps)
    if rows:
        _write_curve(rows, target / "meta_training_curve.csv")
        _draw_curve(rows, target / "meta_training_curve.png",
                    f"Meta-training of {config['update_rule']} ({workdir.name}), {step} θ-steps",
                    build(run_config, "meta_objective").loss_name())
    stored = json.loads((workdir / "config.json").read_text())
    write_atomic(target / "meta_training_config.json",
                 (json.dumps(current_config(stored), indent=2) + "\n").encode())
    return {"step": step, "seconds": seconds, "destination": target}


def _write_curve(rows: list[dict[str, float]], path: pathlib.Path) -> None:
    fields = [field for field in CURVE_FIELDS if field in rows[0]]

    def cell(field, value):
        whole = field in COUNT_FIELDS and math.isfinite(value) and value == int(value)
        return int(value) if whole else value

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        writer.writerows([cell(field, row[field]) for field in fields] for row in rows)


def _draw_curve(rows: list[dict[str, float]], path: pathlib.Path, title: str, loss_name: str) -> None:
    from metaplastic.core.evaluation.pictures import DPI, meta_training_curve_figure

    meta_training_curve_figure(rows, title, loss_name=loss_name).savefig(path, dpi=DPI)
