"""The answer cache forgets answers citing a document when it is re-ingested or deleted."""

from __future__ import annotations

from gateway.cache import AnswerCache, cited_documents
from harag.v1 import common_pb2


def test_evicting_a_document_drops_fresh_and_stale_answers_citing_it() -> None:
    cache: AnswerCache[str] = AnswerCache(ttl_s=60, stale_ttl_s=600, max_entries=100)
    cache.put("q1", "answer 1", {"docs/a.md"})
    cache.put("q2", "answer 2", {"docs/a.md", "docs/b.md"})
    cache.put("q3", "answer 3", {"docs/b.md"})
    assert cache.evict_documents(["docs/a.md"]) == 2
    assert cache.get("q1") is None and cache.get_stale("q1") is None
    assert cache.get("q2") is None and cache.get_stale("q2") is None
    assert cache.get("q3") == "answer 3"
    assert cache.evict_documents(["docs/a.md"]) == 0
    assert cache.evict_documents(["docs/b.md"]) == 1


def test_an_answer_begun_before_an_eviction_is_not_cached() -> None:
    cache: AnswerCache[str] = AnswerCache(ttl_s=60, stale_ttl_s=600, max_entries=100)
    epoch = cache.epoch
    cache.evict_documents(["docs/a.md"])
    cache.put("q", "old answer", {"docs/a.md"}, epoch)
    assert cache.get("q") is None and cache.get_stale("q") is None
    cache.put("q", "new answer", {"docs/a.md"}, cache.epoch)
    assert cache.get("q") == "new answer"


def test_the_index_stays_bounded() -> None:
    cache: AnswerCache[str] = AnswerCache(ttl_s=60, stale_ttl_s=600, max_entries=10)
    for n in range(500):
        cache.put(f"q{n}", "a", {f"d{n}"})
    assert len(cache._cites) <= 2 * 10 + 16


def test_sources_are_cited_by_their_document() -> None:
    chunk = common_pb2.Document(id="a.md#3", chunk=common_pb2.Chunk(document_id="a.md"))
    old = common_pb2.Document(id="legacy")
    sources = [common_pb2.ScoredDocument(document=d) for d in (chunk, old)]
    assert cited_documents(sources) == {"a.md", "legacy"}
