"""The extractive generator: picks the answering sentences and cites their documents."""

from __future__ import annotations

import pytest

from generator_svc.backends import NO_CONTEXT_TEXT, Answer, Finish, create
from generator_svc.backends.extractive import ExtractiveGenerator

DOCS = [
    "Bulkheads isolate resources per dependency. A slow dependency then fills only its own "
    "pool of connections.",
    "# Retry budgets\n\ntags: resilience\n\nA retry budget caps retries at a small fraction of "
    "all requests, for example ten percent. Once the budget is spent, failed calls are not "
    "retried, which prevents retry storms.",
    "Jaeger stores traces. Spans have parents and children.",
]


def generate(query: str, context: list[str], limit: int = 700) -> Answer:
    return ExtractiveGenerator().generate(query, context, limit)


def test_answer_cites_the_document_that_answers_the_query() -> None:
    answer = generate("What is a retry budget?", DOCS)
    assert answer.finish is Finish.STOP
    assert "[2]" in answer.text
    assert "A retry budget caps retries at a small fraction of all requests" in answer.text
    assert answer.citations == (2,)
    assert "[1]" not in answer.text and "[3]" not in answer.text


def test_citation_precedes_the_sentence_end() -> None:
    answer = generate("What is a retry budget?", DOCS)
    assert "for example ten percent [2]." in answer.text


def test_light_stemming_matches_other_word_forms() -> None:
    answer = generate("how are retrying storms prevented", DOCS)
    assert "prevents retry storms [2]." in answer.text


def test_picks_up_to_three_distinct_sentences_and_cites_in_order_of_first_use() -> None:
    context = [
        "Hedging trims the latency tail by racing a second request. The first reply wins.",
        "Hedging reduces tail latency for idempotent reads. It costs a few percent extra load.",
        "Hedging reduces the tail latency of idempotent reads!",  # a near-duplicate of doc 2
    ]
    answer = generate("how does hedging cut tail latency for reads", context)
    assert answer.text.count("[") <= 3
    assert answer.text.startswith("Hedging reduces tail latency for idempotent reads [2].")
    assert "Hedging trims the latency tail by racing a second request [1]." in answer.text
    assert answer.citations == (2, 1)
    assert "[3]" not in answer.text


def test_retrieval_rank_breaks_ties_between_equal_sentences() -> None:
    context = [
        "Load shedding rejects excess work early.",
        "Load shedding rejects extra work early.",
    ]
    answer = generate("what does load shedding do", context)
    assert answer.text.startswith("Load shedding rejects excess work early [1].")


def test_headings_metadata_and_formulas_are_not_quoted() -> None:
    context = [
        "# BM25 ranking\n\ntags: bm25\n\nscore = IDF(t) * f(t, D) * (k1 + 1) / k1 BM25\n\n"
        "BM25 ranks documents by summing weighted query term matches."
    ]
    answer = generate("bm25 ranking", context)
    assert answer.text == "BM25 ranks documents by summing weighted query term matches [1]."


@pytest.mark.parametrize(
    ("query", "context"),
    [
        ("What is a retry budget?", []),
        ("What is a retry budget?", ["", "   "]),
        ("What is the capital of France?", DOCS),
        ("what is it?", DOCS),  # nothing but stopwords
    ],
)
def test_no_usable_context_says_so(query: str, context: list[str]) -> None:
    answer = generate(query, context)
    assert answer.finish is Finish.NO_CONTEXT
    assert answer.text == NO_CONTEXT_TEXT
    assert answer.citations == ()


def test_long_best_sentence_is_cut_on_a_word_boundary_keeping_its_citation() -> None:
    answer = generate("What is a retry budget?", DOCS, limit=40)
    assert answer.finish is Finish.LENGTH
    assert len(answer.text) <= 40
    assert answer.text == "A retry budget caps retries at a… [2]"
    assert answer.citations == (2,)


def test_budget_too_small_for_a_citation_still_respects_the_limit() -> None:
    answer = generate("What is a retry budget?", DOCS, limit=8)
    assert answer.finish is Finish.LENGTH
    assert len(answer.text) <= 8
    assert answer.text.endswith("…")
    assert answer.citations == ()


def test_later_sentences_that_do_not_fit_are_left_out_instead_of_cut() -> None:
    full = generate("retry budget storms", DOCS)
    first = full.text.split("[2].")[0] + "[2]."
    answer = generate("retry budget storms", DOCS, limit=len(first) + 5)
    assert answer.finish is Finish.STOP
    assert answer.text == first


def test_same_request_gives_same_answer() -> None:
    assert generate("retry budget", DOCS) == generate("retry budget", DOCS)


def test_primary_is_extractive() -> None:
    assert create("primary").model == "extractive-v1"
