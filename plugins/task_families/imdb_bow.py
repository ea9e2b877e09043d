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
from metaplastic.core.documented import documented
from metaplastic.core.interfaces import TaskFamily
from metaplastic.core.text import MODES, DenseRows, bag_of_words, vocabulary
from metaplastic.registries import hookimpl


@dataclasses.dataclass(frozen=True)
class ImdbBow(ClassTasks, TaskFamily):
    dataset: str = documented("imdb_reviews", "text dataset the reviews come from (as strings)")
    split: str = documented("train", "the dataset's split tasks are drawn from")
    vocab_split: str = documented("train", "the vocabulary comes from this split")
    vocab_size: int = documented(1000, "the most frequent words kept as features")
    mode: str = documented("counts", "counts | binary | log_counts")
    stop_words: str = documented("", "\"\" keeps every word; \"english\" drops scikit-learn's list")
    classes: tuple[int, ...] = documented((), "allowed classes; () = all")
    classes_per_task: int = documented(0, "0 = every allowed class")
    permute_inputs: bool = documented(True, "each task permutes the word columns with its own fixed permutation")
    examples_per_class: int = documented(10, "per class, in each of the meta batches A and B")
    max_classes: int = documented(2, "one-hot width; tasks with fewer classes are zero-padded")

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
