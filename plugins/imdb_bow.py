"""`imdb_bow`: binary sentiment tasks on a bag of words (the paper's text-domain evaluation).

Text from any source that has the dataset as strings: TFDS `imdb_reviews`
(prepared offline, see docs/datasets.md), or an .npz corpus with string arrays
(`npz` source) — the tests build a small one. The vocabulary is the
`vocab_size` most frequent words of `vocab_split` (lowercased, HTML line breaks
removed, tokens of 2+ word characters; `stop_words="english"` drops
scikit-learn's English stop-word list first). Features per document:
`counts`, `binary` presence, or `log_counts` = log(1 + count).

A task = both classes (or a `classes` subset), a fixed random permutation of the
word columns, class-balanced meta batches A and B; target_dim = max_classes.
Features are kept sparse (CSR) and densified per batch.

The same features are also a data source (`imdb_bow`, `imdb_bow_binary`,
`imdb_bow_log`: dense [N, vocab] float32, 2 classes) for evaluation code that
reads datasets with `load_dataset`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from metaplastic.core.data import load_dataset
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource, TaskFamily
from metaplastic.plugins._classification import ClassTasks
from metaplastic.registries import hookimpl

MODES = ("counts", "binary", "log_counts")


def _preprocess(text: str) -> str:
    return text.lower().replace("<br />", " ")


def _texts(dataset: str, split: str):
    data = load_dataset(dataset, split)
    if data.x.ndim != 1 or not isinstance(data.x[0], str):
        raise ValueError(f"dataset '{dataset}' is not a text dataset (x has shape {data.x.shape}); "
                         "task_family 'imdb_bow' needs strings")
    return data


@functools.lru_cache(maxsize=4)
def word_counts(dataset: str, split: str, stop_words: str):
    """(CSR counts [N, all words] float32, words): one tokenisation per split."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(preprocessor=_preprocess, stop_words=stop_words or None, dtype=np.float32)
    try:
        counts = vectorizer.fit_transform(_texts(dataset, split).x).tocsr()
    except ValueError as error:  # e.g. an empty vocabulary
        raise ValueError(f"dataset '{dataset}' split '{split}': {error}") from None
    return counts, vectorizer.get_feature_names_out()


@functools.lru_cache(maxsize=8)
def vocabulary(dataset: str, vocab_split: str, vocab_size: int, stop_words: str) -> tuple[str, ...]:
    """The vocab_size most frequent words of the split (ties broken alphabetically)."""
    counts, words = word_counts(dataset, vocab_split, stop_words)
    totals = np.asarray(counts.sum(axis=0)).ravel()
    order = np.lexsort((words, -totals))[:vocab_size]  # frequency, then alphabetical: deterministic
    return tuple(str(w) for w in words[order])


@functools.lru_cache(maxsize=8)
def bag_of_words(dataset: str, split: str, vocab_split: str, vocab_size: int, stop_words: str, mode: str):
    """(x CSR [N, V] float32, y [N] int32, num_classes): the vocabulary's columns of the split's counts."""
    import scipy.sparse

    vocab = vocabulary(dataset, vocab_split, vocab_size, stop_words)
    counts, words = word_counts(dataset, split, stop_words)
    column = {word: i for i, word in enumerate(words)}
    present = [(j, column[w]) for j, w in enumerate(vocab) if w in column]
    mapping = scipy.sparse.csr_matrix(
        (np.ones(len(present), np.float32), ([c for _, c in present], [j for j, _ in present])),
        shape=(len(words), len(vocab)))
    x = (counts @ mapping).tocsr()  # words of the vocabulary missing from this split stay zero
    x.sort_indices()
    if mode == "binary":
        x.data[:] = 1.0
    elif mode == "log_counts":
        x.data = np.log1p(x.data)
    data = _texts(dataset, split)
    return x, data.y.astype(np.int32), data.num_classes


class _DenseRows:
    """x[index] -> dense float32 rows of a CSR matrix; shape like an array."""

    def __init__(self, matrix):
        self.matrix = matrix
        self.shape = matrix.shape

    def __getitem__(self, index):
        return self.matrix[index].toarray()


@dataclasses.dataclass(frozen=True)
class ImdbBow(ClassTasks, TaskFamily):
    dataset: str = "imdb_reviews"
    split: str = "train"
    vocab_split: str = "train"      # the vocabulary comes from this split
    vocab_size: int = 1000
    mode: str = "counts"            # counts | binary | log_counts
    stop_words: str = ""            # "" keeps every word; "english" drops scikit-learn's list
    classes: tuple[int, ...] = ()
    classes_per_task: int = 0
    permute_inputs: bool = True
    examples_per_class: int = 10
    max_classes: int = 2

    family_name = "imdb_bow"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"task_family_config.mode: '{self.mode}' is not one of {', '.join(MODES)}")
        if self.vocab_size < 1:
            raise ValueError(f"task_family_config.vocab_size: must be >= 1, got {self.vocab_size}")
        if self.stop_words not in ("", "english"):
            raise ValueError(f"task_family_config.stop_words: '' or 'english', not '{self.stop_words}'")
        self._validate()

    def _datasets(self):
        return (self.dataset,)

    def _arrays(self, dataset):
        x, y, num = bag_of_words(dataset, self.split, self.vocab_split, self.vocab_size,
                                 self.stop_words, self.mode)
        return _DenseRows(x), y, num

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return vocabulary(self.dataset, self.vocab_split, self.vocab_size, self.stop_words)


SOURCE_DATASETS = {"imdb_bow": "counts", "imdb_bow_binary": "binary", "imdb_bow_log": "log_counts"}


@dataclasses.dataclass(frozen=True)
class ImdbBowSource(DataSource):
    """Datasets `imdb_bow` (counts), `imdb_bow_binary`, `imdb_bow_log`: dense [N, 1000] float32
    bag-of-words features of `imdb_reviews` (vocabulary from its train split), 2 classes,
    for evaluation code that wants plain feature datasets."""

    text_dataset: str = "imdb_reviews"
    vocab_size: int = 1000

    def load(self, dataset: str, split: str) -> Dataset:
        if dataset not in SOURCE_DATASETS:
            raise DatasetUnavailable(f"only has {', '.join(SOURCE_DATASETS)} (bag of words of "
                                     f"'{self.text_dataset}')")
        try:
            x, y, num = bag_of_words(self.text_dataset, split, "train", self.vocab_size, "",
                                     SOURCE_DATASETS[dataset])
        except (DatasetUnavailable, ValueError) as why:
            raise DatasetUnavailable(f"needs the text dataset: {why}") from None
        return Dataset(dataset, x.toarray(), y, num, source=f"imdb_bow:{self.text_dataset}")


@hookimpl
def metaplastic_task_families():
    return {"imdb_bow": ImdbBow}


@hookimpl
def metaplastic_data_sources():
    return {"imdb_bow": ImdbBowSource}
