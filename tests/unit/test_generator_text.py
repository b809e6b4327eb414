"""Text helpers of the generators: prose blocks, sentence splitting, trimming, stemming."""

from __future__ import annotations

import pytest

from generator_svc.backends.analysis import stem, terms
from generator_svc.backends.text import blocks, sentences, trim_words


def test_blocks_drop_headings_and_metadata_and_join_soft_wraps() -> None:
    text = "# Title\n\ntags: a, b\n\nFirst line\ncontinues **here**.\n\n- item one\n- item `two`"
    assert blocks(text) == ["First line continues here.", "item one", "item two"]


def test_sentences_split_on_terminal_punctuation_but_not_abbreviations_or_decimals() -> None:
    block = 'Values lie between 1.2 and 2.0. Use e.g. Lucene here! Is it "done?" Yes.'
    assert sentences(block) == [
        "Values lie between 1.2 and 2.0.",
        "Use e.g. Lucene here!",
        'Is it "done?"',
        "Yes.",
    ]


@pytest.mark.parametrize("limit", [1, 2, 5, 9, 10, 11, 12, 20])
def test_trim_words_respects_the_limit_and_cuts_between_words(limit: int) -> None:
    text = "alpha beta gamma"
    trimmed = trim_words(text, limit)
    assert len(trimmed) <= limit
    if limit >= len(text):
        assert trimmed == text
    else:
        assert trimmed.endswith("…")


def test_trim_words_prefers_the_last_whole_word() -> None:
    assert trim_words("alpha beta gamma", 11) == "alpha beta…"
    assert trim_words("alpha beta gamma", 12) == "alpha beta…"
    assert trim_words("alpha beta, gamma", 12) == "alpha beta…"
    assert trim_words("supercalifragilistic", 6) == "super…"


@pytest.mark.parametrize(
    "forms",
    [
        ("retry", "retries", "retried", "retrying"),
        ("cache", "caches", "caching", "cached"),
        ("normalise", "normalize", "normalisation", "normalization"),
        ("stop", "stopped", "stopping"),
        ("speed", "speeds"),
    ],
)
def test_stemming_maps_word_forms_to_one_term(forms: tuple[str, ...]) -> None:
    assert len({stem(form) for form in forms}) == 1


def test_terms_drop_stopwords_and_single_letters() -> None:
    found = terms("What is the k1 parameter of a BM25 model?")
    assert found == ["k1", "parameter", "bm25", "model"]
