"""Bag-of-words features: the vocabulary comes from the training split only."""

from __future__ import annotations

import pytest

from metaplastic.plugins.task_families.imdb_bow import ImdbBow

from helpers.task_families import NEGATIVE, NEUTRAL, POSITIVE, isolated, write_corpus


@pytest.mark.usefixtures("isolated")
def test_imdb_vocabulary_comes_from_the_training_split(isolated):
    write_corpus(isolated / "npz")
    family = ImdbBow(split="test", vocab_size=1000, mode="binary")
    assert family.input_dim == len(family.vocabulary) == len(set(POSITIVE + NEGATIVE + NEUTRAL + ["the", "end"]))
    assert family.vocabulary[:2] == ("end", "the")  # most frequent first, ties alphabetical
    with pytest.raises(ValueError, match="mode: 'tfidf' is not one of"):
        ImdbBow(mode="tfidf")
    with pytest.raises(ValueError, match="not a text dataset"):
        ImdbBow(dataset="digits")
