"""`imdb_bow`: bag-of-words feature datasets of a text corpus, for evaluation code that reads
plain feature datasets with `load_dataset` (`core.text` makes the features)."""

from __future__ import annotations

import dataclasses

from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.core.text import bag_of_words
from metaplastic.registries import hookimpl

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
def metaplastic_data_sources():
    return {"imdb_bow": ImdbBowSource}
