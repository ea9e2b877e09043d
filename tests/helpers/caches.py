"""In-process dataset caches, cleared so a test sees only the data it set up."""


def clear_data_caches() -> None:
    """Forget every in-process dataset cache, so a test sees only the data it set up."""
    from metaplastic.core import classification, text
    from metaplastic.core import data as core_data
    from metaplastic.plugins.data_sources import glyphs
    from metaplastic.plugins.task_families import image_classes

    core_data.load_dataset.cache_clear()
    glyphs.glyph_arrays.cache_clear()
    image_classes._prepared.cache_clear()
    text.vocabulary.cache_clear()
    text.bag_of_words.cache_clear()
    text.word_counts.cache_clear()
    classification.class_index.cache_clear()
