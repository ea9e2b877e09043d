"""The pictures of a finished study: accuracy over datasets (bars), accuracy curves over steps, shots,
depth and width, and the first-layer filters. Each `*_figure` function returns a matplotlib Figure
(not saved, so tests can look inside); `make_pictures` saves them under the study's workdir.

Every picture is at most MAX_WIDTH_PX wide at DPI (panels wrap into rows), its text is at least 9 pt,
it has one legend, outside the panels, and accuracy panels show chance level (1 / classes).

It is long because every picture shares its layout helpers (readable names, panel wrapping, the
legend, chance lines); split by picture they would be repeated."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import textwrap
from typing import Any, Mapping

import ml_collections
import numpy as np

from metaplastic.core.data import dataset_display_name

DPI = 110
MAX_WIDTH_PX = 1600
MAX_WIDTH_IN = 14.5            # 1,595 px at DPI
MIN_FONT_PT = 9
STYLE = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9.5, "figure.titlesize": 12}
CHANCE_STYLE = dict(color="0.25", linestyle="--", linewidth=1.2)
FIELD_LABELS = {"steps": "unsupervised steps", "shots": "labelled examples per class (shots)",
                "depth": "hidden layers (depth)", "width": "hidden-layer width"}

# ---------------------------------------------------------------- readable dataset names

def _spec_fields(spec) -> dict[str, Any]:
    """A dataset entry's fields: a DatasetSpec, a study config's entry, a plain mapping, or None."""
    if spec is None:
        return {}
    if isinstance(spec, ml_collections.ConfigDict):
        return spec.to_dict()
    if dataclasses.is_dataclass(spec):
        return dataclasses.asdict(spec)
    return dict(spec)


def _display_name(dataset: str) -> tuple[str, str] | None:
    """(name, note) that the data sources give `dataset` ('mnist_5k' → ('MNIST', '5k subset')), or None."""
    shown = dataset_display_name(dataset)
    if shown is None:
        return None
    name, bracket, note = shown.partition(" (")
    return name, note.removesuffix(")") if bracket else ""


def _class_text(classes) -> str:
    classes = [int(c) for c in classes]
    if len(classes) >= 2 and classes == list(range(classes[0], classes[0] + len(classes))):
        return f"{classes[0]}–{classes[-1]}"
    if len(classes) > 6:
        return f"{len(classes)} classes"
    return ", ".join(map(str, classes))


def readable_dataset_name(label: str, spec=None, used: str | None = None) -> str:
    """A name for people: the entry's `description` if it has one, else built from the dataset
    (`used`: the one actually loaded, maybe an alternative), its classes and image size, and what of
    the key is left: 'digits_5_9' → 'digits 5–9', 'fashion_14' → 'Fashion-MNIST 14×14',
    'mnist_28' → 'MNIST 28×28', 'digits_0_4_train' → 'digits 0–4 (train)'."""
    fields = _spec_fields(spec)
    if fields.get("description"):
        return str(fields["description"])
    tokens = [t for t in re.split(r"[_\s]+", label) if t]
    source = used or fields.get("dataset")
    consumed: set[int] = set()
    base, note = None, ""
    if source:
        base, note = _display_name(source) or (source.replace("_", " "), "")
        names = {source, fields.get("dataset") or source, *(fields.get("alternatives") or ())}
        # the key's words that spell the dataset or its readable name say nothing more
        words = {w for n in names for w in str(n).lower().split("_")} | set(re.split(r"[-\s]+", base.lower()))
        consumed |= {i for i, t in enumerate(tokens) if t.lower() in words}
    else:  # the key alone: its longest leading run of tokens that a data source names
        for n in range(len(tokens), 0, -1):
            known = _display_name("_".join(tokens[:n]).lower())
            if known is not None:
                (base, note), consumed = known, set(range(n))
                break
        if base is None and tokens:
            base, consumed = tokens[0], {0}
    numeric = [i for i, t in enumerate(tokens) if t.isdigit() and i not in consumed]
    classes = tuple(fields.get("classes") or ())
    class_text = ""
    if classes:
        class_text = _class_text(classes)
        consumed |= {i for i in numeric if int(tokens[i]) in classes}
    elif len(numeric) >= 2 and numeric[1] == numeric[0] + 1:  # 'digits_5_9' without a spec
        a, b = int(tokens[numeric[0]]), int(tokens[numeric[1]])
        class_text = f"{a}–{b}" if a < b else f"{a},{b}"
        consumed |= {numeric[0], numeric[1]}
    size = int(fields.get("image_size") or 0)
    left = [i for i in numeric if i not in consumed]
    if size:
        consumed |= {i for i in left if int(tokens[i]) == size}
    elif len(left) == 1:  # 'mnist_28' at native size: the key's number is the size
        size = int(tokens[left[0]])
        consumed.add(left[0])
    parts = [base or label, class_text, f"{size}×{size}" if size else ""]
    extras = [tokens[i] for i in range(len(tokens)) if i not in consumed]
    notes = extras + ([note] if note and used else [])
    name = " ".join(p for p in parts if p)
    return f"{name} ({', '.join(notes)})" if notes else name


def chance_level(num_classes: int) -> float:
    return 1.0 / max(1, int(num_classes))


def method_label(label: str) -> str:
    """'learned@2532' → 'learned\\nmeta-step 2532' (rows of the filter picture)."""
    base, _, step = label.rpartition("@")
    return f"{base}\nmeta-step {step}" if base and step.isdigit() else label


def method_names(methods: Mapping[str, Any]) -> dict[str, str]:
    """label -> the name a legend shows. An update rule is named by itself and where its θ came from
    ('simple_local (glyphs-v2)', 'metz2019 (run_a, meta-step 250)', 'hebbian'), not by its column label
    ('learned'); other methods keep their label. A name two labels would share gets its label added."""
    names = {}
    for label, method in methods.items():
        settings = method.identity() if method is not None else {}
        if not settings.get("rule"):
            names[label] = label
            continue
        checkpoint = str(settings.get("checkpoint") or "")
        if checkpoint.startswith("pretrained:"):
            source = checkpoint[len("pretrained:"):]
        elif checkpoint:
            path = checkpoint.rstrip("/").split("/")
            source = "/".join(path[-2:]) if path[-1] in ("best", "") and len(path) > 1 else path[-1]
        else:
            source = ""
        step = settings.get("checkpoint_step")
        if step is not None and "@" in label:
            source = f"{source}, meta-step {step}" if source else f"meta-step {step}"
        names[label] = f"{settings['rule']} ({source})" if source else str(settings["rule"])
    shared = [name for name in names.values() if list(names.values()).count(name) > 1]
    return {label: f"{name} [{label}]" if name in shared and name != label else name
            for label, name in names.items()}


def arch_text(arch: str) -> str:
    return arch.replace("x", "×")


def _seeds_text(n: int) -> str:
    return "one seed (no error bars)" if n <= 1 else f"mean ± standard error over {n} seeds"


# ---------------------------------------------------------------- figure helpers

def _styled(function):
    """Build the figure under STYLE (fonts of at least MIN_FONT_PT)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)

    return wrapper


def _figure(width_in: float, height_in: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(min(width_in, MAX_WIDTH_IN), height_in), dpi=DPI, layout=layout)


def _colours(method_order) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(method_order) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(method_order)}


def _legend(fig, handles, labels):
    """One legend for the whole figure, below the panels, in as few rows as fit."""
    widths = [0.6 + 0.075 * len(lab) for lab in labels]  # inches at 9.5 pt
    room = fig.get_figwidth() - 0.3
    ncol = len(labels) if sum(widths) <= room else max(1, min(len(labels), int(room / max(widths))))
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def _title(fig, parts: list[str]):
    """A suptitle wrapped to the figure's width (parts joined by '; ', broken between parts)."""
    chars = int(fig.get_figwidth() / 0.1)  # characters per line at 12 pt
    lines, line = [], ""
    for part in parts:
        joined = f"{line}; {part}" if line else part
        if line and len(joined) > chars:
            lines.append(line + ";")
            line = part
        else:
            line = joined
    fig.suptitle("\n".join(lines + [line]))


def _chance_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], **CHANCE_STYLE)


def integer_ticks(axis, values, decades: bool = False) -> list[int]:
    """Integer tick labels on an x or y `axis` (log, symlog or linear) at the data's values, or, with
    `decades`, at 1, 10, 100, ... (and 0) when the data span two or more powers of ten; minor ticks
    unlabelled (no '2×10⁰')."""
    from matplotlib.ticker import NullFormatter

    values = sorted({int(v) for v in values})
    ticks = values
    positive = [v for v in values if v > 0]
    if decades and positive:
        lo, hi = min(positive), max(positive)
        powers = [10 ** k for k in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1)
                  if lo <= 10 ** k <= hi]
        if len(powers) >= 2:
            ticks = ([0] if 0 in values else []) + powers
    axis.set_ticks(ticks, [str(t) for t in ticks])
    axis.set_minor_formatter(NullFormatter())
    return ticks


def _set_scale(ax, which: str, scale: str):
    if scale == "symlog":
        (ax.set_xscale if which == "x" else ax.set_yscale)("symlog", linthresh=1)
    elif scale == "log":
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")


def _main_value(values, preferred):
    values = sorted(set(values))
    return preferred if preferred in values else values[-1]


def _rows(summary, **match):
    return [r for r in summary if all(r[k] == v for k, v in match.items())]


def _names_and_chance(dataset_order, datasets) -> tuple[dict[str, str], dict[str, float | None]]:
    names, chance = {}, {}
    for label in dataset_order:
        spec, data = (datasets or {}).get(label, (None, None))
        names[label] = readable_dataset_name(label, spec, data.dataset if data is not None else None)
        chance[label] = chance_level(data.num_classes) if data is not None and data.num_classes else None
    return names, chance


def _tick_label(name: str, width: int) -> str:
    """'MNIST 28×28 (5k subset)' → 'MNIST 28×28\n(5k subset)', each line wrapped to `width`."""
    head, paren, rest = name.partition(" (")
    lines = textwrap.wrap(head, width) + (textwrap.wrap("(" + rest, width) if paren else [])
    return "\n".join(lines)


def _max_n(rows) -> int:
    return max((int(r["n"]) for r in rows), default=0)


# ---------------------------------------------------------------- the figures

@_styled
def datasets_figure(summary, method_order, datasets, readouts, shots, steps, arch, names_of=None):
    """Grouped bars: every method on every dataset, one panel per readout, chance as a dashed line;
    `names_of`: label -> legend name (`method_names`)."""
    dataset_order = list(dict.fromkeys(r["dataset"] for r in summary))
    names, chance = _names_and_chance(dataset_order, datasets)
    colours = _colours(method_order)
    group_in = max(1.7, 0.24 * len(method_order) + 0.5)
    panel_in = min(MAX_WIDTH_IN, 0.9 + group_in * len(dataset_order))
    cols = max(1, min(len(readouts), int(MAX_WIDTH_IN // panel_in)))
    rows = math.ceil(len(readouts) / cols)
    width = max(6.5, cols * panel_in)
    wrap = max(10, int(group_in * 9))  # characters per tick-label line at 9 pt
    fig = _figure(width, 1.3 + 3.5 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    bar = 0.8 / len(method_order)
    x = np.arange(len(dataset_order))
    shown = _rows(summary, shots=shots, steps=steps, arch=arch)
    for ax, readout in zip(axes, readouts):
        for i, method in enumerate(method_order):
            values = [_rows(shown, dataset=d, method=method, readout=readout) for d in dataset_order]
            means = [v[0]["mean"] if v else np.nan for v in values]
            errs = [v[0]["se"] if v and v[0]["se"] == v[0]["se"] else 0.0 for v in values]
            ax.bar(x + (i - (len(method_order) - 1) / 2) * bar, means, bar, yerr=errs, capsize=2,
                   label=(names_of or {}).get(method, method), color=colours[method],
                   error_kw=dict(elinewidth=1, ecolor="0.15"))
        for j, d in enumerate(dataset_order):
            if chance[d] is not None:
                ax.hlines(chance[d], j - 0.45, j + 0.45, **CHANCE_STYLE, zorder=3)
        ax.set_xticks(x, [_tick_label(names[d], wrap) for d in dataset_order])
        ax.set_xlim(-0.55, len(dataset_order) - 0.45)
        ax.set_ylim(0, 1)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{readout} readout")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    for ax in axes[len(readouts):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if any(c is not None for c in chance.values()):
        handles, labels = handles + [_chance_handle()], labels + ["chance (1 / classes)"]
    _title(fig, [f"Test accuracy with {shots} labelled examples per class", f"{steps} unsupervised steps",
                 f"architecture {arch_text(arch)}", _seeds_text(_max_n(shown))])
    _legend(fig, handles, labels)
    return fig


@_styled
def curves_figure(summary, method_order, datasets, readouts, field, fixed, log=True, context=(), names_of=None):
    """Accuracy against `field` (steps, shots, depth, width): one panel per (readout, dataset), wrapped
    into rows of at most four; integer ticks; chance as a dashed line; `names_of`: label -> legend name."""
    dataset_order = list(dict.fromkeys(r["dataset"] for r in summary))
    names, chance = _names_and_chance(dataset_order, datasets)
    colours = _colours(method_order)
    shown = _rows(summary, **fixed)
    if len(dataset_order) == 1:
        panels = [(readout, dataset_order[0]) for readout in readouts]
        cols = min(4, len(panels))
        slots = panels
    else:
        cols = len(dataset_order) if len(dataset_order) <= 4 else math.ceil(
            len(dataset_order) / math.ceil(len(dataset_order) / 4))
        per_readout = math.ceil(len(dataset_order) / cols) * cols
        slots = []
        for readout in readouts:  # each readout starts a new row
            block = [(readout, d) for d in dataset_order]
            slots += block + [None] * (per_readout - len(block))
    rows = math.ceil(len(slots) / cols)
    panel_in = min(4.6, MAX_WIDTH_IN / cols)
    width = max(6.5, cols * panel_in)
    fig = _figure(width, 1.3 + 2.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    values = sorted({r[field] for r in shown})
    slots = list(slots) + [None] * (len(axes) - len(slots))
    scale = ("symlog" if min(values, default=1) <= 0 else "log") if log else "linear"
    for index, (ax, slot) in enumerate(zip(axes, slots)):
        if slot is None:
            ax.set_visible(False)
            continue
        readout, dataset = slot
        for method in method_order:
            points = sorted((r[field], r["mean"], r["se"]) for r in
                            _rows(shown, dataset=dataset, method=method, readout=readout))
            if points:
                x, m, s = map(np.asarray, zip(*points))
                ax.errorbar(x, m, yerr=np.nan_to_num(s), marker="o", ms=4, capsize=2, lw=1.5,
                            label=(names_of or {}).get(method, method), color=colours[method])
        if chance[dataset] is not None:
            ax.axhline(chance[dataset], **CHANCE_STYLE, zorder=1)
        _set_scale(ax, "x", scale)
        if values:
            integer_ticks(ax.xaxis, values, decades=field == "steps")
        below = slots[index + cols] if index + cols < len(slots) else None
        if below is None or below[0] != readout:  # the last row of this readout's panels
            ax.set_xlabel(FIELD_LABELS.get(field, field))
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{names[dataset]}, {readout}")
        ax.grid(alpha=0.3)
    first = next(ax for ax in axes if ax.get_visible())
    handles, labels = first.get_legend_handles_labels()
    if any(c is not None for c in chance.values()):
        handles, labels = handles + [_chance_handle()], labels + ["chance (1 / classes)"]
    _title(fig, [f"Test accuracy over {FIELD_LABELS.get(field, field)}", *context,
                 _seeds_text(_max_n(shown))])
    _legend(fig, handles, labels)
    return fig


@_styled
def filters_figure(rows, shape, title: str, max_columns: int = 16):
    """First-layer weights as grayscale tiles, one row per method, each tile scaled to ± its own
    largest |weight| (grey = 0), aspect kept."""
    columns = min(max_columns, max(w.shape[1] for _, w in rows))
    labels = [method_label(label) for label, _ in rows]
    label_in = max(1.2, 0.1 + 0.085 * max(len(line) for lab in labels for line in lab.split("\n")))
    gap, right, top, bottom = 0.06, 0.15, 0.85, 0.12
    tile_w = min(0.85, (MAX_WIDTH_IN - label_in - right) / columns - gap)
    tile_h = tile_w * shape[0] / shape[1]
    width = label_in + columns * (tile_w + gap) + right
    height = top + len(rows) * (tile_h + gap) + bottom
    fig = _figure(width, height, layout=None)
    W, H = fig.get_figwidth(), fig.get_figheight()
    for r, ((label, weights), text) in enumerate(zip(rows, labels)):
        y = H - top - (r + 1) * (tile_h + gap) + gap
        for j in range(columns):
            ax = fig.add_axes(((label_in + j * (tile_w + gap)) / W, y / H, tile_w / W, tile_h / H))
            ax.set_xticks([])
            ax.set_yticks([])
            if j < weights.shape[1]:
                tile = weights[:, j].reshape(shape)
                limit = float(np.abs(tile).max()) + 1e-12
                ax.imshow(tile, cmap="gray", vmin=-limit, vmax=limit, interpolation="nearest", aspect="equal")
            else:
                ax.set_axis_off()
        fig.text((label_in - 0.12) / W, (y + tile_h / 2) / H, text, ha="right", va="center", fontsize=10)
    fig.text(0.5, (H - 0.12) / H, title, ha="center", va="top", fontsize=11.5)
    fig.text(0.5, (H - 0.45) / H, f"one tile per first-layer unit (the first {columns}); each tile on its "
             "own scale: grey = 0, white / black = ± its largest |weight|", ha="center", va="top",
             fontsize=9.5)
    return fig


# ---------------------------------------------------------------- all of a study's pictures

def build_figures(config, summary, records, methods, datasets, store) -> list[tuple[str, str, Any]]:
    """[(title, file name, Figure)] of a study, in the report's order."""
    figures = []
    method_order = list(methods)
    names_of = method_names(methods)
    readouts = tuple(config.readouts)
    main_shots = _main_value([r["shots"] for r in summary], config.main_shots)
    main_steps = max(r["steps"] for r in summary)
    archs = list(dict.fromkeys(r["arch"] for r in summary))
    main_arch = archs[0]
    dataset_order = list(dict.fromkeys(r["dataset"] for r in summary))

    if len(dataset_order) > 1:
        figures.append(("Accuracy over datasets", "datasets.png",
                        datasets_figure(summary, method_order, datasets, readouts, main_shots, main_steps,
                                        main_arch, names_of=names_of)))
    arch = f"architecture {arch_text(main_arch)}"
    if len({r["steps"] for r in summary}) > 1:
        figures.append(("Accuracy over unsupervised steps", "steps.png", curves_figure(
            summary, method_order, datasets, readouts, "steps", {"shots": main_shots, "arch": main_arch},
            context=[f"{main_shots} labelled examples per class", arch], names_of=names_of)))
    if len({r["shots"] for r in summary}) > 1:
        figures.append(("Accuracy over labelled examples per class", "shots.png", curves_figure(
            summary, method_order, datasets, readouts, "shots", {"steps": main_steps, "arch": main_arch},
            context=[f"{main_steps} unsupervised steps", arch], names_of=names_of)))
    if len(archs) > 1:
        depths = [r["depth"] for r in summary]
        widths = [r["width"] for r in summary]
        ref_width = max(set(widths), key=widths.count)
        ref_depth = max(set(depths), key=depths.count)
        fixed = {"shots": main_shots, "steps": main_steps}
        context = [f"{main_shots} labelled examples per class", f"{main_steps} unsupervised steps"]
        if len({r["depth"] for r in _rows(summary, width=ref_width)}) > 1:
            figures.append((f"Accuracy over depth (width {ref_width})", "depth.png", curves_figure(
                summary, method_order, datasets, readouts, "depth", {**fixed, "width": ref_width},
                log=False, context=[f"width {ref_width}", *context], names_of=names_of)))
        if len({r["width"] for r in _rows(summary, depth=ref_depth)}) > 1:
            figures.append((f"Accuracy over width (depth {ref_depth})", "width.png", curves_figure(
                summary, method_order, datasets, readouts, "width", {**fixed, "depth": ref_depth},
                context=[f"depth {ref_depth}", *context], names_of=names_of)))

    tiles = filter_tiles(records, datasets, main_shots, main_steps, main_arch, method_order, store,
                         config.filters_dataset)
    if tiles:
        dataset, shape, rows = tiles
        spec, data = datasets[dataset]
        name = readable_dataset_name(dataset, spec, data.dataset)
        figures.append(("First-layer filters", "filters.png", filters_figure(
            rows, shape, f"First-layer filters: {name}, after {main_steps} unsupervised steps, "
                         f"architecture {arch_text(main_arch)}, seed 0")))
    return figures


@_styled
def meta_training_curve_figure(rows: list[dict], title: str, window: int = 50, loss_name: str = ""):
    """Meta-loss per θ-step (thin) and its running mean over `window` steps, from metrics.csv rows;
    `loss_name`: what the loss measures (`MetaObjective.loss_name`), shown on its axis."""
    kept = [r for r in rows if r.get("meta_loss") not in (None, "")]
    steps = np.array([int(r["step"]) for r in kept])
    losses = np.array([float(r["meta_loss"]) for r in kept])
    fig = _figure(9.0, 4.2)
    ax = fig.add_subplot()
    ax.plot(steps, losses, color="0.7", linewidth=0.6, label="meta-loss of each θ-step")
    if len(losses) >= window:
        mean = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], mean, color="C0", linewidth=2.0, label=f"mean of the last {window} θ-steps")
    ax.set_xlabel("θ-step (meta-training step)")
    ax.set_ylabel(f"meta-loss ({loss_name})" if loss_name else "meta-loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    _legend(fig, handles, labels)
    _title(fig, [title])
    return fig


def make_pictures(config, workdir, summary, records, methods, datasets, store) -> dict[str, str]:
    """Save every picture of a study in `workdir`; returns {title: file name}."""
    import matplotlib

    pictures = {}
    with matplotlib.rc_context(STYLE):
        for title, name, fig in build_figures(config, summary, records, methods, datasets, store):
            fig.savefig(workdir / name, dpi=DPI)
            pictures[title] = name
    return pictures


def filter_tiles(records, datasets, shots, steps, arch, method_order, store, preferred):
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
