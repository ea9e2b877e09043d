"""The `apt_packages` source (APT package descriptions as labelled text), its bag-of-words
datasets in `imdb_bow`, and the `eval/text` study — on small fake package lists built here."""

from __future__ import annotations

import collections
import gzip
import hashlib
import lzma
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from metaplastic import cli
from metaplastic.core import data as core_data, evaluation
from metaplastic.core.interfaces import DatasetUnavailable
from metaplastic.plugins.data_sources import apt_packages as apt

from helpers.caches import clear_data_caches
from helpers import REPO_ROOT


ROOT = REPO_ROOT
MAIN = "deb.example.org_debian_dists_test_main_binary-amd64_Packages"
CONTRIB = "deb.example.org_debian_dists_test_contrib_binary-amd64_Packages"
TRANSLATION = "deb.example.org_debian_dists_test_contrib_i18n_Translation-en"
WORDS = {"python": ["python", "module", "django", "numpy", "pytest"],
         "libs": ["shared", "library", "runtime", "soname", "linking"],
         "perl": ["perl", "cpan", "moose", "plack", "catalyst"],
         "utils": ["command", "utility", "shell", "terminal", "files"],
         "games": ["game", "puzzle", "arcade", "levels", "player"]}
FILLER = ["for", "the", "and", "with", "support", "tool", "data", "simple"]
# folded sizes after dedup: python 26, libs 22, perl 22, utils 15 + 6 contrib = 21, games 5 (< 20: dropped)
MAIN_SIZES = {"python": 26, "libs": 22, "perl": 22, "utils": 15, "games": 5}
CONTRIB_UTILS = 6
LONG_DOC = ("a tool duplicated across lists command utility\n\n"
            "First paragraph of the long text,\nwrapped on two lines.\n\n"
            "  verbatim line\n\nLast paragraph.")


def words(section: str, rng) -> str:
    """The section's first word (as "Python module for ..."), two more of its words, filler."""
    return " ".join([WORDS[section][0]] + rng.choice(WORDS[section][1:], 2).tolist()
                    + rng.choice(FILLER, 3).tolist())


def stanza(fields: list[tuple[str, str]]) -> str:
    return "".join(f"{k}: {v}\n" if k else f"{v}\n" for k, v in fields) + "\n"


def write_lists(root: pathlib.Path) -> dict:
    """Two lists in two folders (main: long descriptions inline; contrib: Description-md5 only,
    long text in Translation-en); one package in both. Returns what the tests check against."""
    rng = np.random.default_rng(0)
    main, contrib = root / "main", root / "contrib"
    main.mkdir(parents=True)
    contrib.mkdir(parents=True)
    out, expected = [], {}
    for section, size in MAIN_SIZES.items():
        for i in range(size):
            name = f"{section}-pkg{i:02d}"
            source = f"src-{section}-{i // 2}"  # two binaries per source
            short = words(section, rng)
            out.append(stanza([("Package", name), ("Source", f"{source} (1.0-{i})"), ("Version", "1.0"),
                               ("Description", short), (None, f" {words(section, rng)} long line"),
                               ("Tag", "role::program,"), (None, " use::testing"),  # not the description
                               ("Section", section), ("Description-md5", f"{i:032x}")]))
            expected[name] = (section, source)
    out.append(stanza([("Package", "dup-tool"), ("Section", "utils"), ("Description",
                       "a tool duplicated across lists command utility"),
                       (None, " First paragraph of the long text,"), (None, " wrapped on two lines."),
                       (None, " ."), (None, "   verbatim line"), (None, " ."), (None, " Last paragraph.")]))
    (main / MAIN).write_text("".join(out))
    out, translations = [], []
    for i in range(CONTRIB_UTILS):
        name = f"contrib-util{i}"
        short = words("utils", rng)
        md5 = hashlib.md5(name.encode()).hexdigest()
        out.append(stanza([("Package", name), ("Section", "contrib/utils"), ("Description", short),
                           ("Description-md5", md5)]))
        if i < CONTRIB_UTILS - 1:  # the last one has no translation: its short description is its text
            translations.append(stanza([("Package", name), ("Description-md5", md5),
                                        ("Description-en", short), (None, f" translated text {i}"),
                                        (None, " ."), (None, " second paragraph")]))
        expected[name] = ("utils", name)
    out.append(stanza([("Package", "dup-tool"), ("Section", "contrib/utils"),
                       ("Description", "a tool duplicated"), ("Description-md5", "f" * 32)]))
    (contrib / CONTRIB).write_text("".join(out))
    (contrib / TRANSLATION).write_text("".join(translations))
    expected["dup-tool"] = ("utils", "dup-tool")
    return expected


def clear():
    clear_data_caches()
    apt._parse.cache_clear()


@pytest.fixture
def lists(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()
    monkeypatch.setenv("METAPLASTIC_CACHE_DIR", str(tmp_path / "cache"))
    expected = write_lists(tmp_path / "lists")
    monkeypatch.setenv(apt.LISTS_ENV, f"{tmp_path / 'lists' / 'main'}:{tmp_path / 'lists' / 'contrib'}")
    clear()
    yield tmp_path / "lists", expected
    clear()


def table(corpus) -> dict:
    return {p: (t, s, src, sp) for p, t, s, src, sp in zip(corpus.packages, corpus.texts, corpus.sections,
                                                            corpus.sources, corpus.splits)}


# ---------------------------------------------------------------- parsing

def test_descriptions_are_parsed_with_long_text_paragraphs_and_translations(lists):
    corpus = apt.load_corpus()
    got = table(corpus)
    assert got["dup-tool"][0] == LONG_DOC  # the longer of its two records, ` .` -> blank line
    translated = got["contrib-util0"][0]
    assert translated.endswith("\n\ntranslated text 0\n\nsecond paragraph")
    assert "\n" not in got[f"contrib-util{CONTRIB_UTILS - 1}"][0]  # no translation: the short one only
    python = got["python-pkg00"][0]
    assert python.endswith(" long line") and "\n\n" in python and "use::testing" not in python
    assert corpus.translated == CONTRIB_UTILS - 1


def test_records_reader_handles_continuations_and_missing_trailing_blank():
    lines = ["Package: a\n", "Description: short\n", " one\n", " .\n", " two\n", "Tag: x,\n", " y\n",
             "\n", "\n", "Package: b\n", "Description: only"]
    got = list(apt.records(lines))
    assert [r["Package"] for r in got] == ["a", "b"]
    assert apt.document(got[0]["Description"], got[0]["long"]) == "short\n\none\n\ntwo"
    assert apt.document(got[1]["Description"], got[1]["long"]) == "only"


def test_sections_are_folded_duplicates_dropped_and_classes_chosen_by_count(lists, monkeypatch):
    _, expected = lists
    corpus = apt.load_corpus()
    assert sorted(corpus.packages.tolist()) == sorted(expected) == corpus.packages.tolist()
    assert corpus.duplicates == 1  # dup-tool, listed twice
    assert {p: s for p, (_, s, _, _) in table(corpus).items()} == {p: s for p, (s, _) in expected.items()}
    counts = corpus.section_counts()
    assert counts["utils"] == MAIN_SIZES["utils"] + CONTRIB_UTILS + 1 and "contrib/utils" not in counts
    # largest first, the libs/perl tie by name; games (5 < MIN_SECTION_SIZE) is not a class
    assert apt.section_classes(corpus) == ("python", "libs", "perl", "utils")
    monkeypatch.setattr(apt, "NUM_SECTIONS", 2)
    assert apt.section_classes(corpus) == ("python", "libs")
    monkeypatch.setattr(apt, "MIN_SECTION_SIZE", 5)
    monkeypatch.setattr(apt, "NUM_SECTIONS", 10)
    assert apt.section_classes(corpus)[-1] == "games"


def test_the_kept_duplicate_does_not_depend_on_the_order_of_the_lists(lists, monkeypatch):
    root, _ = lists
    first = table(apt.load_corpus())
    monkeypatch.setenv(apt.LISTS_ENV, f"{root / 'contrib'}:{root / 'main'}")
    clear()
    assert table(apt.load_corpus()) == first


@pytest.mark.parametrize("ext", [".gz", ".xz", ".lz4"])
def test_compressed_lists_read_like_plain_ones(lists, ext):
    root, _ = lists
    plain = table(apt.load_corpus())
    path = root / "main" / MAIN
    if ext == ".gz":
        (root / "main" / (MAIN + ext)).write_bytes(gzip.compress(path.read_bytes()))
    elif ext == ".xz":
        (root / "main" / (MAIN + ext)).write_bytes(lzma.compress(path.read_bytes()))
    else:
        if not shutil.which("lz4"):
            pytest.skip("no lz4 command to write an .lz4 list with")
        subprocess.run(["lz4", "-q", str(path), str(root / "main" / (MAIN + ext))], check=True)
    assert apt.list_files()[0][0].name == MAIN  # the plain one wins when both are there
    path.unlink()
    clear()
    assert apt.list_files()[0][0].name == MAIN + ext
    assert table(apt.load_corpus()) == plain


def test_lz4_lists_fall_back_to_apt_helper_and_else_say_what_to_install(lists, monkeypatch):
    root, _ = lists
    if not shutil.which("lz4"):
        pytest.skip("no lz4 command to write an .lz4 list with")
    plain = table(apt.load_corpus())
    path = root / "main" / MAIN
    subprocess.run(["lz4", "-q", "--rm", str(path), str(root / "main" / (MAIN + ".lz4"))], check=True)
    monkeypatch.setitem(sys.modules, "lz4", None)  # as if the Python package were missing
    monkeypatch.setattr(apt.shutil, "which", lambda name: None)  # ... and the lz4 command
    clear()
    if pathlib.Path(apt.APT_HELPER).exists():
        assert table(apt.load_corpus()) == plain  # APT's own `apt-helper cat-file`
    monkeypatch.setattr(apt, "APT_HELPER", str(root / "no-apt-helper"))
    clear()
    how = r"\.lz4 is lz4-compressed: pip install lz4, or install the lz4 command$"
    with pytest.raises(DatasetUnavailable, match=how):
        apt.load_corpus()


# ---------------------------------------------------------------- splits and datasets

def test_split_is_deterministic_disjoint_and_keeps_a_source_together(lists):
    names = {}
    for split in ("train", "test"):
        packages, x, y, classes = apt.texts_and_labels("apt_sections", split)
        names[split] = set(packages.tolist())
        data = core_data.load_dataset("apt_sections", split)
        assert list(data.x) == list(x) and np.array_equal(data.y, y) and data.num_classes == len(classes) == 4
    assert names["train"] and names["test"] and not names["train"] & names["test"]
    clear()
    again = {s: set(apt.texts_and_labels("apt_sections", s)[0].tolist()) for s in ("train", "test")}
    assert again == names
    corpus = apt.load_corpus()
    by_source = collections.defaultdict(set)
    for source, split in zip(corpus.sources, corpus.splits):
        by_source[source].add(split)
    assert max(len(s) for s in by_source.values()) == 1 and len(by_source) < len(corpus.packages)
    # pinned: a sha256 of the name, the same in every process (not Python's salted hash())
    assert [apt.split_of(f"package{i}") for i in range(8)] == ["train"] * 7 + ["test"]
    share = np.mean([apt.split_of(f"p{i}") == "test" for i in range(4000)])
    assert abs(share - apt.TEST_PERCENT / 100) < 0.02


def test_the_pair_is_python_against_perl_as_text(lists):
    train = core_data.load_dataset("apt_pair", "train")
    test = core_data.load_dataset("apt_pair", "test")
    assert train.num_classes == 2 and train.x.ndim == 1 and isinstance(train.x[0], str)
    assert len(train.x) + len(test.x) == MAIN_SIZES["python"] + MAIN_SIZES["perl"]
    for data in (train, test):
        for text, label in zip(data.x, data.y):
            assert any(w in text.split() for w in WORDS[apt.PAIR[label]])


def test_bag_of_words_datasets_have_the_imdb_encoding(lists):
    from metaplastic.core.text import vocabulary

    pair = core_data.load_dataset("apt_pair_bow", "train")
    text = core_data.load_dataset("apt_pair", "train")
    assert pair.x.dtype == np.float32 and pair.x.ndim == 2 and pair.x.shape[0] == len(text.x)
    assert pair.x.shape[1] <= 1000 and pair.num_classes == 2 and set(pair.y.tolist()) == {0, 1}
    vocab = vocabulary("apt_pair", "train", 1000, "")
    column = vocab.index("perl")
    assert pair.x[:, column].tolist() == [float(t.lower().split().count("perl")) for t in text.x]
    sections = core_data.load_dataset("apt_sections_bow", "test")
    assert sections.num_classes == 4
    assert sections.x.shape[1] == len(vocabulary("apt_sections", "train", 1000, ""))


def test_the_imdb_bow_task_family_samples_section_tasks(lists):
    import jax

    from metaplastic.core.interfaces import Architecture
    from metaplastic.plugins.task_families.imdb_bow import ImdbBow

    family = ImdbBow(dataset="apt_sections", max_classes=10, examples_per_class=3, permute_inputs=False)
    assert family.input_dim == len(family.vocabulary) <= 1000 and family.target_dim == 10
    assert "python" in family.vocabulary and "perl" in family.vocabulary
    task = family.sample_task(jax.random.PRNGKey(0), Architecture(family.input_dim, (8,)))
    data = family.truncation_data(task, jax.random.PRNGKey(1), 2, 5)
    assert data.unlabelled.shape == (2, 5, family.input_dim)
    assert data.meta_a.y.shape == (2, 12, 10) and np.all(data.meta_a.y[0].sum(0)[:4] == 3)
    assert not data.meta_a.y[..., 4:].any()  # 4 classes here, padded to max_classes


# ---------------------------------------------------------------- missing data

def test_no_lists_is_one_line_that_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv(apt.LISTS_ENV, str(tmp_path))
    clear()
    with pytest.raises(DatasetUnavailable) as caught:
        apt.AptPackagesSource().load("apt_sections", "train")
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and apt.LISTS_ENV in message and "apt-get update" in message
    assert str(tmp_path) in message
    with pytest.raises(DatasetUnavailable) as caught:
        core_data.load_dataset("apt_pair_bow", "train")
    assert len(str(caught.value).splitlines()) == 1 and apt.LISTS_ENV in str(caught.value)
    clear()


def test_other_names_and_splits_are_refused_without_reading_lists(tmp_path, monkeypatch):
    monkeypatch.setenv(apt.LISTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DatasetUnavailable, match=r"^only has apt_sections, apt_pair "):
        apt.AptPackagesSource().load("mnist", "train")
    with pytest.raises(DatasetUnavailable, match="has splits train, test, not 'validation'"):
        apt.AptPackagesSource().load("apt_pair", "validation")


def test_the_lists_folder_comes_from_the_environment_else_apts(monkeypatch, tmp_path):
    monkeypatch.setenv(apt.LISTS_ENV, f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert apt.list_dirs() == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.delenv(apt.LISTS_ENV)
    assert apt.list_dirs() == [pathlib.Path("/var/lib/apt/lists")]


# ---------------------------------------------------------------- the study

def test_text_study_runs_on_the_fake_lists(lists):
    root, _ = lists
    study = evaluation.load_study(str(ROOT / "experiments" / "eval" / "text.py") + ":quick",
                                  ["--config.seeds=1"])
    assert {d.dataset for d in study.datasets.values()} == {"apt_pair_bow", "apt_sections_bow"}
    assert not any(d.permute_inputs for d in study.datasets.values())
    results = evaluation.run_study(study, root.parent / "out", progress=False, log=lambda _: None)
    assert results["datasets"] == {"pair": "ok: 'apt_pair_bow'", "sections": "ok: 'apt_sections_bow'"}
    cells = results["summary"]
    assert {c["method"] for c in cells} == set(study.methods)
    assert {c["dataset"] for c in cells} == {"pair", "sections"}
    assert all(np.isfinite(c["mean"]) and c["non_finite"] == 0 for c in cells)
    raw = [c["mean"] for c in cells if c["method"] == "raw_input" and c["dataset"] == "pair"]
    assert min(raw) > 0.8  # the words separate python from perl, so the labels reach the readout


def test_text_study_without_lists_stops_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(apt.LISTS_ENV, str(tmp_path / "empty"))
    clear()
    code = cli.main(["evaluate", "--config", str(ROOT / "experiments" / "eval" / "text.py") + ":quick",
                     "--workdir", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and apt.LISTS_ENV in err and len(err.strip().splitlines()) == 1
    clear()
