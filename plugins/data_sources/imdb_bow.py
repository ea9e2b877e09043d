"""`imdb_bow`: bag-of-words feature datasets of text corpora, for evaluation code that reads
plain feature datasets with `load_dataset` (`core.text` makes the features).

IMDB reviews (`imdb_reviews`, from TFDS or an .npz corpus) and APT's package descriptions
(`apt_sections`, `apt_pair`, from the `apt_packages` source), each with the vocabulary of its
train split; the text is looked up with `load_dataset`, so any source that has it will do.
"""

from __future__ import annotations

import dataclasses

from metaplastic.core.documented import documented
from metaplastic.core.interfaces import Dataset, DatasetUnavailable, DataSource
from metaplastic.core.text import bag_of_words
from metaplastic.registries import hookimpl

SOURCE_DATASETS = {"imdb_bow": "counts", "imdb_bow_binary": "binary", "imdb_bow_log": "log_counts"}
# feature dataset -> (text dataset, mode): corpora other than the `text_dataset` field's
OTHER_TEXT = {"apt_sections_bow": ("apt_sections", "counts"), "apt_pair_bow": ("apt_pair", "counts")}


@dataclasses.dataclass(frozen=True)
class ImdbBowSource(DataSource):
    """Datasets `imdb_bow` (counts), `imdb_bow_binary`, `imdb_bow_log`: dense [N, 1000] float32
    bag-of-words features of `imdb_reviews` (vocabulary from its train split), 2 classes; and
    `apt_sections_bow` (10 classes), `apt_pair_bow` (2 classes): word counts of APT package
    descriptions, encoded the same way."""

    text_dataset: str = documented("imdb_reviews", "the text dataset whose reviews the imdb_bow datasets encode")
    vocab_size: int = documented(1000, "the most frequent words of its train split kept as features")

    def names(self) -> tuple[str, ...]:
        return (*SOURCE_DATASETS, *OTHER_TEXT)

    def display_name(self, dataset: str) -> str | None:
        return "IMDB reviews" if dataset in ("imdb_bow", "imdb") else None  # 'imdb': its usual short name

    def load(self, dataset: str, split: str) -> Dataset:
        if dataset in SOURCE_DATASETS:
            text, mode = self.text_dataset, SOURCE_DATASETS[dataset]
        elif dataset in OTHER_TEXT:
            text, mode = OTHER_TEXT[dataset]
        else:
            raise DatasetUnavailable(f"only has {', '.join(SOURCE_DATASETS)} (bag of words of "
                                     f"'{self.text_dataset}'), {', '.join(OTHER_TEXT)}")
        try:
            x, y, num = bag_of_words(text, split, "train", self.vocab_size, "", mode)
        except (DatasetUnavailable, ValueError) as why:
            raise DatasetUnavailable(f"needs the text dataset: {why}") from None
        return Dataset(dataset, x.toarray(), y, num, source=f"imdb_bow:{text}")


@hookimpl
def metaplastic_data_sources():
    return {"imdb_bow": ImdbBowSource}
