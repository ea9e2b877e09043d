"""Bag-of-words features of a text dataset (the paper's IMDB encoding), shared by the `imdb_bow`
task family and the `imdb_bow` data source.

The vocabulary is the `vocab_size` most frequent words of `vocab_split` (lowercased, HTML line breaks
removed, tokens of 2+ word characters; `stop_words="english"` drops scikit-learn's English stop-word list
first). Features per document: `counts`, `binary` presence, or `log_counts` = log(1 + count), kept sparse
(CSR).
"""

from __future__ import annotations

import numpy as np

from metaplastic.core.data import BadDataset, dataset_cache, load_dataset

MODES = ("counts", "binary", "log_counts")


def _preprocess(text: str) -> str:
    return text.lower().replace("<br />", " ")


def _texts(dataset: str, split: str):
    data = load_dataset(dataset, split)
    if data.x.ndim != 1 or not isinstance(data.x[0], str):
        raise BadDataset(f"dataset '{dataset}' is not a text dataset (x has shape {data.x.shape}); "
                         "a bag of words needs strings")
    return data


@dataset_cache(maxsize=4)
def word_counts(dataset: str, split: str, stop_words: str):
    """(CSR counts [N, all words] float32, words): one tokenisation per split."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(preprocessor=_preprocess, stop_words=stop_words or None, dtype=np.float32)
    texts = _texts(dataset, split).x  # BadDataset names the dataset itself
    try:
        counts = vectorizer.fit_transform(texts).tocsr()
    except ValueError as error:  # e.g. an empty vocabulary
        raise BadDataset(f"dataset '{dataset}' split '{split}': {error}") from None
    return counts, vectorizer.get_feature_names_out()


@dataset_cache(maxsize=8)
def vocabulary(dataset: str, vocab_split: str, vocab_size: int, stop_words: str) -> tuple[str, ...]:
    """The vocab_size most frequent words of the split (ties broken alphabetically)."""
    counts, words = word_counts(dataset, vocab_split, stop_words)
    totals = np.asarray(counts.sum(axis=0)).ravel()
    order = np.lexsort((words, -totals))[:vocab_size]  # frequency, then alphabetical: deterministic
    return tuple(str(w) for w in words[order])


@dataset_cache(maxsize=8)
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


class DenseRows:
    """x[index] -> dense float32 rows of a CSR matrix; shape like an array."""

    def __init__(self, matrix):
        self.matrix = matrix
        self.shape = matrix.shape

    def __getitem__(self, index):
        return self.matrix[index].toarray()
