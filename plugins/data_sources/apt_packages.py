"""`apt_packages`: labelled text from APT's package lists — the package descriptions of a
Debian/Ubuntu machine, offline once `apt-get update` has run.

Where: the folders in $METAPLASTIC_APT_LISTS (os.pathsep-separated) when it is set, else
/var/lib/apt/lists. Read there: every `*_Packages` list and every `*_Translation-en` file, plain or
compressed as APT keeps them with `Acquire::GzipIndexes` (Docker images do: `.lz4`, also `.gz`,
`.xz`, `.lzma`, `.bz2`, `.zst`; .lz4/.zst need the `lz4`/`zstandard` Python package, the
`lz4`/`zstd` command or APT's own `apt-helper cat-file`).

Documents: a package's description — the short description, a blank line, then the long
description with its lines as they are (one leading space removed; a ` .` line becomes a blank
line, a paragraph break). A list that carries only `Description-md5` gets the long text from the
`Description-en` of a Translation-en file with that md5 (the md5 is of the English description,
so it names the text; the lookup is by md5, which `Package` + md5 would only narrow); when no
translation has it, the short description alone is the document. A package listed more than once
(several lists, architectures or suites) is kept once: its longest document (ties: the text, then
the section, alphabetically), whatever order the lists are read in.

Labels: the `Section`, folded to its last part (`contrib/utils`, `non-free/utils`,
`universe/utils` -> `utils`). Datasets:
  apt_sections  the NUM_SECTIONS (10) largest sections that have at least MIN_SECTION_SIZE (20)
                packages, counted over all (deduplicated) packages of both splits; class i is the
                i-th of them by count (largest first), ties by name. On Debian 12 (bookworm, main):
                libs, libdevel, python, doc, perl, devel, utils, haskell, net, rust.
  apt_pair      a binary task as IMDB's is: class 0 = `python`, class 1 = `perl` (PAIR). Among
                the large sections of bookworm python/perl is the most balanced pair of sections of
                the same kind (language module collections; 4,546 vs 4,223 packages, 0.93): doc/python
                is closer in count (0.98) but `doc` is a kind of package across every topic (many
                document python modules), libs/libdevel are one library's two halves, libs/utils 3:1.
Splits `train` / `test` (80/20) by a hash (sha256) of the package's *source* package name
(`Source:`, else the package's own name): the same lists give the same split on every machine, and
a source's binaries (`libfoo1`, `libfoo-dev`, `libfoo-doc`, with near-identical descriptions) never
straddle the split. Packages are ordered by name; `x` is a 1-D object array of str, `y` int32.

Bags of words of these (`apt_sections_bow`, `apt_pair_bow`) come from the `imdb_bow` source
through `core.text`, like IMDB's.

Caching: in this process only (`functools.lru_cache`, keyed by every list's (path, size, mtime)),
no file cache: parsing bookworm's lists (main + updates + security, 50 MB of text, 66k records)
takes 1.7-2.7 s — little for a study, and a cache of the texts (uint8 buffer + offsets) would
still have to be decoded into 64k Python strings.
"""

from __future__ import annotations

import bz2
import collections
import dataclasses
import functools
import gzip
import hashlib
import importlib
import io
import lzma
import os
import pathlib
import shutil
import subprocess
from typing import Iterable, Iterator

import numpy as np

from metaplastic.core.data import file_stamp
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.registries import hookimpl

LISTS_ENV = "METAPLASTIC_APT_LISTS"
DEFAULT_LISTS = "/var/lib/apt/lists"
HOW_TO = f'run "apt-get update" (Debian/Ubuntu), or set {LISTS_ENV} to a folder of *_Packages files'

NUM_SECTIONS = 10       # classes of apt_sections
MIN_SECTION_SIZE = 20   # packages a section needs to be a class (enough for 10-shot draws and a test set)
PAIR = ("python", "perl")  # apt_pair: class 0, class 1
TEST_PERCENT = 20
DATASETS = ("apt_sections", "apt_pair")
SPLITS = ("train", "test")

COMPRESSED = (".gz", ".xz", ".lzma", ".bz2", ".lz4", ".zst")
APT_HELPER = "/usr/lib/apt/apt-helper"
_FIELDS = {"Package", "Source", "Section", "Description", "Description-md5", "Description-en"}


# ---------------------------------------------------------------- finding and opening the lists

def list_dirs() -> list[pathlib.Path]:
    """$METAPLASTIC_APT_LISTS's folders when it is set, else /var/lib/apt/lists."""
    listed = [p for p in os.environ.get(LISTS_ENV, "").split(os.pathsep) if p]
    return [pathlib.Path(p).expanduser() for p in (listed or [DEFAULT_LISTS])]


def _find(folder: pathlib.Path, suffix: str) -> list[pathlib.Path]:
    """Files named *<suffix> or *<suffix>.<compression>; one per list, the plain one when both exist."""
    found = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        name = path.name
        for ext in ("", *COMPRESSED):
            if name.endswith(suffix + ext) and path.is_file():
                base = name[: len(name) - len(ext)] if ext else name
                if base not in found or not ext:
                    found[base] = path
                break
    return [found[base] for base in sorted(found)]


def list_files() -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """(Packages lists, Translation-en files) in every list folder."""
    packages, translations = [], []
    for folder in list_dirs():
        packages += _find(folder, "_Packages")
        translations += _find(folder, "_Translation-en")
    return packages, translations


def _command(path: pathlib.Path, ext: str) -> list[str] | None:
    tool = {".lz4": ("lz4", "-dc"), ".zst": ("zstd", "-dc")}.get(ext)
    if tool and shutil.which(tool[0]):
        return [shutil.which(tool[0]), tool[1], "--", str(path)]
    if os.access(APT_HELPER, os.X_OK):
        return [APT_HELPER, "cat-file", str(path)]
    return None


def _piped(command: list[str], path: pathlib.Path) -> Iterator[str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield from io.TextIOWrapper(process.stdout, encoding="utf-8", errors="replace")
        error = process.stderr.read().decode(errors="replace").strip().replace("\n", " ")
        if process.wait() != 0:
            raise DatasetUnavailable(f"cannot decompress {path} with {os.path.basename(command[0])}: "
                                     f"{error or 'exit status ' + str(process.returncode)}")
    finally:
        if process.poll() is None:  # abandoned half-way
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def read_lines(path: pathlib.Path) -> Iterator[str]:
    """The file's lines as text, decompressed as its name says."""
    ext = path.suffix if path.suffix in COMPRESSED else ""
    openers = {"": lambda p: open(p, encoding="utf-8", errors="replace"),
               ".gz": lambda p: gzip.open(p, "rt", encoding="utf-8", errors="replace"),
               ".bz2": lambda p: bz2.open(p, "rt", encoding="utf-8", errors="replace"),
               ".xz": lambda p: lzma.open(p, "rt", encoding="utf-8", errors="replace"),
               ".lzma": lambda p: lzma.open(p, "rt", encoding="utf-8", errors="replace")}
    module = {".lz4": "lz4.frame", ".zst": "zstandard"}.get(ext)
    if module:
        try:
            lib = importlib.import_module(module)
        except ImportError:
            command = _command(path, ext)
            if command is None:
                raise DatasetUnavailable(
                    f"{path} is {ext[1:]}-compressed: pip install {module.split('.')[0]}, or install the "
                    f"{'lz4' if ext == '.lz4' else 'zstd'} command") from None
            yield from _piped(command, path)
            return
        if ext == ".lz4":
            openers[ext] = lambda p: lib.open(p, "rt", encoding="utf-8", errors="replace")
        else:
            openers[ext] = lambda p: io.TextIOWrapper(lib.ZstdDecompressor().stream_reader(open(p, "rb")),
                                                      encoding="utf-8", errors="replace")
    try:
        with openers[ext](path) as lines:
            yield from lines
    except (OSError, EOFError, lzma.LZMAError) as error:
        raise DatasetUnavailable(f"cannot read {path}: {error}") from None


# ---------------------------------------------------------------- parsing

def records(lines: Iterable[str]) -> Iterator[dict]:
    """deb822 records (blank-line separated) as {field: first-line value} for the fields used here;
    a description's continuation lines go to record["long"] (one leading space removed)."""
    record, long = {}, None
    for line in lines:
        if line[:1] in (" ", "\t"):
            if long is not None:
                long.append(line[1:].rstrip())
            continue
        if not line.strip():
            if record:
                yield record
            record, long = {}, None
            continue
        name, _, value = line.partition(":")
        long = None
        if name in _FIELDS:
            record[name] = value.strip()
            if name in ("Description", "Description-en"):
                long = record["long"] = []
    if record:
        yield record


def document(short: str, long: list[str]) -> str:
    """Short description, a blank line, then the long text; a ` .` line is a blank line."""
    body = "\n".join("" if line.strip() == "." else line for line in long).strip("\n")
    return f"{short}\n\n{body}" if body else short


def fold_section(section: str) -> str:
    """`contrib/utils`, `non-free/utils`, `universe/utils` -> `utils`."""
    return section.rsplit("/", 1)[-1].strip().lower()


def split_of(name: str) -> str:
    """'train' or 'test' for a (source) package name: sha256, the same on every machine."""
    bucket = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % 100
    return "test" if bucket < TEST_PERCENT else "train"


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
    """Every package once, ordered by name."""

    packages: np.ndarray   # [N] str
    sources: np.ndarray    # [N] str: source package (the split's key)
    sections: np.ndarray   # [N] str: folded section ("" when the list has none)
    texts: np.ndarray      # [N] object (str)
    splits: np.ndarray     # [N] str: 'train' | 'test'
    lists: tuple[str, ...]
    duplicates: int        # records dropped as repeats of a package
    translated: int        # documents whose long text came from a Translation-en file

    def section_counts(self) -> collections.Counter:
        return collections.Counter(s for s in self.sections.tolist() if s)


@functools.lru_cache(maxsize=4)
def _parse(package_stamps: tuple, translation_stamps: tuple) -> Corpus:
    best, wanted, seen = {}, {}, 0
    for path, _, _ in package_stamps:
        for record in records(read_lines(pathlib.Path(path))):
            name = record.get("Package")
            if not name or "Description" not in record:
                continue
            seen += 1
            long = record.get("long") or []
            source = record.get("Source", "").split(" ", 1)[0] or name
            entry = (document(record["Description"], long), fold_section(record.get("Section", "")), source)
            if not long and record.get("Description-md5"):
                wanted.setdefault(record["Description-md5"], []).append((name, entry))
            _keep(best, name, entry)
    translated = set()
    for path, _, _ in translation_stamps if wanted else ():
        for record in records(read_lines(pathlib.Path(path))):
            md5 = record.get("Description-md5")
            if md5 in wanted and "Description-en" in record:
                text = document(record["Description-en"], record.get("long") or [])
                for name, (_, section, source) in wanted.pop(md5):
                    if _keep(best, name, (text, section, source)):
                        translated.add(name)
    names = sorted(best)
    texts, sections, sources = zip(*(best[n] for n in names)) if names else ((), (), ())
    return Corpus(packages=np.asarray(names, dtype=object), sources=np.asarray(sources, dtype=object),
                  sections=np.asarray(sections, dtype=object), texts=np.asarray(texts, dtype=object),
                  splits=np.asarray([split_of(s) for s in sources], dtype=object),
                  lists=tuple(p for p, _, _ in package_stamps), duplicates=seen - len(names),
                  translated=len(translated))


def _keep(best: dict, name: str, entry: tuple) -> bool:
    """Keep a package's longest document (ties: the text, then the section): independent of the
    order of the lists. True when `entry` is now the one kept."""
    old = best.get(name)
    if old is None or (-len(entry[0]), entry) < (-len(old[0]), old):
        best[name] = entry
        return True
    return False


def load_corpus() -> Corpus:
    """Every package of the lists found (see the module docstring), parsed once per process."""
    packages, translations = list_files()
    if not packages:
        where = os.pathsep.join(str(d) for d in list_dirs())
        raise DatasetUnavailable(f"no APT package lists (*_Packages) under {where}; {HOW_TO}")
    try:
        return _parse(tuple(file_stamp(p) for p in packages), tuple(file_stamp(p) for p in translations))
    except OSError as error:
        raise DatasetUnavailable(f"cannot read the APT lists: {error}") from None


# ---------------------------------------------------------------- the datasets

def section_classes(corpus: Corpus) -> tuple[str, ...]:
    """apt_sections' classes: the NUM_SECTIONS largest sections with >= MIN_SECTION_SIZE packages,
    largest first, ties by name."""
    counts = corpus.section_counts()
    ranked = sorted((-n, s) for s, n in counts.items() if n >= MIN_SECTION_SIZE)
    return tuple(s for _, s in ranked[:NUM_SECTIONS])


def dataset_classes(dataset: str, corpus: Corpus) -> tuple[str, ...]:
    """The sections that are the dataset's classes 0..C-1."""
    counts = corpus.section_counts()
    where = f"the APT lists under {os.pathsep.join(str(d) for d in list_dirs())}"
    if dataset == "apt_pair":
        small = [f"{s} ({counts[s]})" for s in PAIR if counts[s] < MIN_SECTION_SIZE]
        if small:
            raise DatasetUnavailable(f"apt_pair needs >= {MIN_SECTION_SIZE} packages in sections "
                                     f"{' and '.join(PAIR)}; {where} have {', '.join(small)}")
        return PAIR
    classes = section_classes(corpus)
    if len(classes) < 2:
        raise DatasetUnavailable(f"apt_sections needs 2 sections with >= {MIN_SECTION_SIZE} packages; "
                                 f"{where} have {len(classes)}")
    return classes


def texts_and_labels(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(package names [N], documents [N] object, labels [N] int32, class sections) of a split."""
    corpus = load_corpus()
    classes = dataset_classes(dataset, corpus)
    label = {s: i for i, s in enumerate(classes)}
    y = np.asarray([label.get(s, -1) for s in corpus.sections.tolist()], np.int32)
    keep = (y >= 0) & (corpus.splits == split)
    return corpus.packages[keep], corpus.texts[keep], y[keep], classes


@dataclasses.dataclass(frozen=True)
class AptPackagesSource(DataSource):
    """Datasets `apt_sections` (10 sections) and `apt_pair` (python vs perl): APT package
    descriptions as text (x [N] str), labelled by section; splits train / test."""

    def names(self) -> tuple[str, ...]:
        return DATASETS

    def load(self, dataset: str, split: str) -> Dataset:
        if dataset not in DATASETS:
            raise DatasetUnavailable(f"only has {', '.join(DATASETS)} (APT package descriptions)")
        if split not in SPLITS:
            raise DatasetUnavailable(f"'{dataset}' has splits {', '.join(SPLITS)}, not '{split}'")
        _, x, y, classes = texts_and_labels(dataset, split)
        if not len(x):
            raise DatasetUnavailable(f"'{dataset}' split '{split}' has no packages in the APT lists under "
                                     f"{os.pathsep.join(str(d) for d in list_dirs())}")
        return Dataset(dataset, x, y, len(classes), source=f"apt_packages:{'|'.join(classes)}")


@hookimpl
def metaplastic_data_sources():
    return {"apt_packages": AptPackagesSource}
