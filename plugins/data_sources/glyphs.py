"""`glyphs`: characters rendered from font files, offline (the paper's "Glyph/Alphabet" data).

Class = character; examples = fonts and styles, each with small random jitter
(rotation ±10°, scale 0.85–1.05, shift ±2 px). 28×28 grayscale, bright glyph on
black like MNIST, drawn on a common baseline so case stays visible (o vs O).

Datasets: `glyphs` (0-9, A-Z, a-z: 62 classes), `glyphs_digits` (0-9), `glyphs_upper`
(A-Z). Splits: `train` (12 jittered copies per font and character), `test` (4
other copies), `all`.

Fonts: the DejaVu, STIX and Computer Modern fonts that ship with matplotlib,
plus, unless the source's field `fonts` (`config.data_sources.glyphs.fonts`) or else
METAPLASTIC_GLYPH_FONTS is `bundled`, the system's fonts (/usr/share/fonts,
~/.fonts, ...) and any folders in METAPLASTIC_FONT_DIRS. A font counts when it
has all 62 characters and is not a symbol font; duplicates (same family and
style) count once; at most METAPLASTIC_GLYPH_MAX_FONTS (default 64) are used.
So the exact data depends on the fonts installed; `bundled` gives the same data
everywhere. Rendering runs once; the uint8 result is cached in memory and in
<cache_dir>/glyphs (written atomically).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import re
import string

import numpy as np

from metaplastic.core.data import cache_key, cached_arrays, to_unit_float
from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.core.ops.images import affine_warp
from metaplastic.registries import hookimpl

VERSION = 1  # bump when rendering changes (invalidates caches)
CHARS = string.digits + string.ascii_uppercase + string.ascii_lowercase
CHARSETS = {
    "glyphs": CHARS,
    "glyphs_digits": string.digits,
    "glyphs_upper": string.ascii_uppercase,
}
SIZE = 28
VARIANTS = {"train": 12, "test": 4}
MAX_ROTATION = np.deg2rad(10.0)
SCALE_RANGE = (0.85, 1.05)
MAX_SHIFT = 2.0  # pixels
FONTS_ENV, DIRS_ENV, MAX_ENV = "METAPLASTIC_GLYPH_FONTS", "METAPLASTIC_FONT_DIRS", "METAPLASTIC_GLYPH_MAX_FONTS"
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
                    "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts")
# symbol, placeholder and math-extension fonts that map letters to non-letters
DENY = re.compile(r"last resort|cmex|cmsy|symbol|dingbat|wingding|webding|emoji|icon|awesome", re.I)


def font_dirs(mode: str | None = None) -> list[str]:
    import matplotlib

    mode = mode or os.environ.get(FONTS_ENV, "all")
    dirs = [os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")]
    if mode != "bundled":
        dirs += [d for d in os.environ.get(DIRS_ENV, "").split(os.pathsep) if d]
        dirs += list(SYSTEM_FONT_DIRS)
    return [os.path.expanduser(d) for d in dirs]


def find_fonts(mode: str | None = None) -> list[tuple[str, str]]:
    """[(path, 'family style')] of usable fonts, bundled ones first, deduplicated."""
    from matplotlib.ft2font import FT2Font

    found, seen = [], set()
    for folder in font_dirs(mode):
        paths = sorted(p for ext in ("ttf", "otf", "TTF", "OTF")
                       for p in glob.glob(os.path.join(folder, "**", f"*.{ext}"), recursive=True))
        for path in paths:
            try:
                font = FT2Font(path)
            except Exception:
                continue
            name = f"{font.family_name} {font.style_name}"
            if name in seen or DENY.search(name) or DENY.search(os.path.basename(path)):
                continue
            if all(font.get_char_index(ord(c)) for c in CHARS):
                seen.add(name)
                found.append((path, name))
    limit = int(os.environ.get(MAX_ENV, "64"))
    if len(found) > limit:  # evenly spaced, deterministic, bundled fonts kept first
        found = [found[i] for i in np.linspace(0, len(found) - 1, limit).round().astype(int)]
    return found


def render_font(path: str, chars: str = CHARS, size: int = SIZE) -> np.ndarray:
    """[len(chars), size, size] float32 in [0, 1]: drawn at 2× on a shared baseline, then 2×2-averaged."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = 2 * size
    probe = ImageFont.truetype(path, 100)
    boxes = np.asarray([probe.getbbox(c, anchor="ls") for c in CHARS], np.float32)  # relative to baseline
    top, bottom = boxes[:, 1].min(), boxes[:, 3].max()
    widest = (boxes[:, 2] - boxes[:, 0]).max()
    scale = 0.9 * canvas / max(1.0, bottom - top, widest)  # every character of the font fits
    font = ImageFont.truetype(path, max(4, int(100 * scale)))
    baseline = (canvas - (bottom - top) * scale) / 2 - top * scale
    out = np.empty((len(chars), canvas, canvas), np.float32)
    for i, char in enumerate(chars):
        image = Image.new("L", (canvas, canvas), 0)
        ImageDraw.Draw(image).text((canvas / 2, baseline), char, fill=255, font=font, anchor="ms")
        out[i] = np.asarray(image, np.float32)
    return out.reshape(len(chars), size, 2, size, 2).mean(axis=(2, 4)) / 255.0


def _jitter(base: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """[copies, M, S, S, 1] jittered copies of base [M, S, S, 1]."""
    out = np.empty((copies, *base.shape), np.float32)
    m = len(base)
    for v in range(copies):  # one vectorised warp per copy
        angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION, m)
        scale = rng.uniform(*SCALE_RANGE, m)
        shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, (m, 2))
        out[v] = affine_warp(base, angle, shift, scale)
    return out


def build_glyphs(fonts: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """All splits: x_<split> uint8 [N, 28, 28, 1], y_<split> int32 (index into CHARS), fonts."""
    base = np.stack([render_font(path) for path, _ in fonts])  # [F, 62, S, S]
    base = base.reshape(-1, SIZE, SIZE, 1)                       # font-major, then character
    labels = np.tile(np.arange(len(CHARS), dtype=np.int32), len(fonts))
    arrays = {"fonts": np.asarray([name for _, name in fonts])}
    for seed, (split, copies) in enumerate(sorted(VARIANTS.items())):
        images = _jitter(base, copies, np.random.default_rng([VERSION, seed]))
        arrays[f"x_{split}"] = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8).reshape(-1, SIZE, SIZE, 1)
        arrays[f"y_{split}"] = np.tile(labels, copies)
    return arrays


@functools.lru_cache(maxsize=4)
def glyph_arrays(mode: str) -> dict[str, np.ndarray]:
    """The rendered splits for a font mode ('all' or 'bundled'), from the file cache if present."""
    fonts = find_fonts(mode)
    if not fonts:
        raise DatasetUnavailable(f"no usable fonts in {', '.join(font_dirs(mode))}; `pip install "
                                 f"matplotlib` (ships DejaVu) or set {DIRS_ENV} to a folder of .ttf files")
    stamp = [(name, os.path.getsize(path)) for path, name in fonts]
    key = cache_key("glyphs", VERSION, CHARS, SIZE, VARIANTS, SCALE_RANGE, MAX_SHIFT, stamp)
    return cached_arrays("glyphs", key, lambda: build_glyphs(fonts))


FONT_MODES = ("all", "bundled")


@dataclasses.dataclass(frozen=True)
class GlyphSource(DataSource):
    """Characters rendered from fonts. `fonts`: "bundled" (matplotlib's fonts only: the same data on every
    machine), "all" (also the system's fonts), or "" (METAPLASTIC_GLYPH_FONTS, else "all")."""

    fonts: str = documented(
        "",
        "bundled (matplotlib's fonts only: the same data everywhere) | all (also the system's) | empty: "
        "METAPLASTIC_GLYPH_FONTS, else all")

    def __post_init__(self):
        if self.fonts not in ("", *FONT_MODES):
            raise ValueError(f"fonts: '{self.fonts}' is not one of {', '.join(FONT_MODES)} (or '' for "
                             f"{FONTS_ENV}, else 'all')")

    def names(self) -> tuple[str, ...]:
        return tuple(CHARSETS)

    def load(self, dataset: str, split: str) -> Dataset:
        if dataset not in CHARSETS:
            raise DatasetUnavailable(f"only has {', '.join(CHARSETS)} (rendered from fonts)")
        if split not in (*VARIANTS, "all"):
            raise DatasetUnavailable(f"{dataset} has splits {[*VARIANTS, 'all']}, not '{split}'")
        arrays = glyph_arrays(self.fonts or os.environ.get(FONTS_ENV, "all"))
        splits = list(VARIANTS) if split == "all" else [split]
        x = np.concatenate([arrays[f"x_{s}"] for s in splits])
        y = np.concatenate([arrays[f"y_{s}"] for s in splits])
        chars = CHARSETS[dataset]
        if chars != CHARS:
            keep = np.isin(y, [CHARS.index(c) for c in chars])
            x, y = x[keep], y[keep] - CHARS.index(chars[0])  # each charset is a contiguous run of CHARS
        return Dataset(dataset, to_unit_float(x), y, len(chars),
                       source=f"glyphs:{len(arrays['fonts'])} fonts")


@hookimpl
def metaplastic_data_sources():
    return {"glyphs": GlyphSource}
