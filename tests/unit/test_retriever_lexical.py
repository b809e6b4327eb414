"""Lexical backend: BM25 ranking and scores, filters, lazy rebuilds, persistence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from retriever_svc.backends.base import Query
from retriever_svc.backends.lexical import LexicalBackend, tokenize
from retriever_svc.filters import Filter
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore


def doc(doc_id: str, text: str, **metadata: str) -> StoredDocument:
    return StoredDocument(doc_id, text, dict(metadata), {})


@pytest.fixture
def backend(tmp_path: Path) -> LexicalBackend:
    return LexicalBackend(DocumentStore(tmp_path / "lexical"))


def search(backend: LexicalBackend, text: str, top_k: int = 10, *filters: Filter) -> list[str]:
    return [h.document.id for h in backend.search(Query(text, None, "", top_k, filters)).hits]


def scores(backend: LexicalBackend, text: str) -> dict[str, float]:
    return {h.document.id: h.score for h in backend.search(Query(text, None, "", 50)).hits}


def test_tokenizer_lowercases_and_drops_stopwords() -> None:
    assert tokenize("The Circuit-Breaker is OPEN and a retry") == [
        "circuit",
        "breaker",
        "open",
        "retry",
    ]


def test_document_with_the_rare_query_term_ranks_first(backend: LexicalBackend) -> None:
    backend.upsert(
        [
            doc("common-1", "the service returns an answer from the service cache"),
            doc("common-2", "a service answers every request with an answer"),
            doc("rare", "the service trips its circuit breaker"),
            doc("unrelated", "bananas are yellow"),
        ]
    )
    assert search(backend, "service breaker")[0] == "rare"
    assert "unrelated" not in search(backend, "service breaker")  # shares no term: not returned


def test_more_occurrences_score_higher_at_equal_length(backend: LexicalBackend) -> None:
    backend.upsert(
        [
            doc("once", "breaker alpha beta gamma"),
            doc("twice", "breaker breaker beta gamma"),
            doc("filler", "delta epsilon zeta theta"),
        ]
    )
    found = scores(backend, "breaker")
    assert found["twice"] > found["once"] > 0


def test_shorter_document_wins_at_equal_term_frequency(backend: LexicalBackend) -> None:
    backend.upsert(
        [
            doc("short", "breaker opens"),
            doc("long", "breaker opens after many failures within the sliding window of calls"),
            doc("filler", "delta epsilon"),
        ]
    )
    found = scores(backend, "breaker")
    assert found["short"] > found["long"] > 0


def test_scores_are_bm25_with_lucene_idf(backend: LexicalBackend) -> None:
    texts = {"d1": "apple apple banana", "d2": "banana cherry", "d3": "cherry date elder fig"}
    backend.upsert([doc(i, t) for i, t in texts.items()])
    k1, b, n = 1.5, 0.75, 3
    avgdl = (3 + 2 + 4) / 3

    def bm25(term: str, doc_id: str) -> float:
        words = texts[doc_id].split()
        df = sum(term in t.split() for t in texts.values())
        tf = words.count(term)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf / (tf + k1 * (1 - b + b * len(words) / avgdl))

    found = scores(backend, "apple banana")
    assert found.keys() == {"d1", "d2"}
    for doc_id in found:
        expected = bm25("apple", doc_id) + bm25("banana", doc_id)
        assert found[doc_id] == pytest.approx(expected, rel=1e-5)


def test_single_document_corpus_and_degenerate_texts(backend: LexicalBackend) -> None:
    assert search(backend, "anything") == []
    backend.upsert([doc("only", "graceful shutdown drains connections")])
    assert search(backend, "shutdown") == ["only"]
    assert search(backend, "the and of") == []  # only stopwords: nothing to rank by
    backend.upsert([doc("stop", "the and of")])  # a document with no indexable term
    assert search(backend, "shutdown") == ["only"]
    backend.delete(["only"])
    assert search(backend, "shutdown") == []


def test_filters_restrict_before_the_top_k_cut(backend: LexicalBackend) -> None:
    backend.upsert(
        [
            doc("en-1", "retry budget retry budget", lang="en", kind="guide"),
            doc("en-2", "retry budget", lang="en", kind="faq"),
            doc("fr-1", "retry budget retry", lang="fr", kind="guide"),
            doc("none", "retry budget retry budget retry"),
        ]
    )
    assert search(backend, "retry", 1, Filter("lang", frozenset({"fr"}))) == ["fr-1"]
    both = (Filter("lang", frozenset({"en", "fr"})), Filter("kind", frozenset({"guide"})))
    assert sorted(search(backend, "retry", 10, *both)) == ["en-1", "fr-1"]


def test_writes_after_a_search_are_seen_by_the_next_search(backend: LexicalBackend) -> None:
    backend.upsert([doc("a", "hedged requests")])
    assert search(backend, "hedged") == ["a"]
    backend.upsert([doc("b", "hedged hedged requests cancel the loser"), doc("a", "bulkheads")])
    assert search(backend, "hedged") == ["b"]
    backend.delete(["b"])
    assert search(backend, "hedged") == []
    assert search(backend, "bulkheads") == ["a"]


def test_results_survive_a_reopen(tmp_path: Path) -> None:
    first = LexicalBackend(DocumentStore(tmp_path, snapshot_every=2))
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]
    for i in range(9):
        first.upsert([doc(f"d{i}", " ".join(rng.choice(words, 12)), n=str(i % 2))])
    first.delete(["d4"])
    query = Query("w1 w7 w13", None, "", 8, (Filter("n", frozenset({"0"})),))
    before = [(h.document.id, h.score) for h in first.search(query).hits]
    first.close()

    second = LexicalBackend(DocumentStore(tmp_path, snapshot_every=2))
    assert before and [(h.document.id, h.score) for h in second.search(query).hits] == before
    assert second.stats().documents == 8
