"""`imdb_bow`: binary sentiment tasks on a bag of words (the paper's text-domain evaluation).

Text from any source that has the dataset as strings: TFDS `imdb_reviews`
(prepared offline, see docs/datasets.md), or an .npz corpus with string arrays
(`npz` source) — the tests build a small one. Features: `core.text` (the
`vocab_size` most frequent words, counts, binary or log counts).

A task = both classes (or a `classes` subset), a fixed random permutation of the
word columns, class-balanced meta batches A and B; target_dim = max_classes.
Features are kept sparse (CSR) and densified per batch.
"""

from __future__ import annotations

import dataclasses

from metaplastic.core.classification import ClassTasks
from metaplastic.core.interfaces import TaskFamily
from metaplastic.core.text import MODES, DenseRows, bag_of_words, vocabulary
from metaplastic.registries import hookimpl


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
        return DenseRows(x), y, num

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return vocabulary(self.dataset, self.vocab_split, self.vocab_size, self.stop_words)


@hookimpl
def metaplastic_task_families():
    return {"imdb_bow": ImdbBow}
