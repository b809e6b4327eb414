"""The answer cache: fresh answers (LRU + TTL) and the last good answer per query (stale).

Every entry is indexed by the ids of the documents its sources came from, so ingesting or
deleting a document evicts the answers that cited it (fresh and stale copies alike).

Only answers served entirely by primaries are cached, so an outage never keeps serving
degraded answers after recovery. The stale layer outlives the fresh one: when every
generator fails, the last good answer for the same query is better than no answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

from cachetools import TLRUCache

from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from harag.v1 import common_pb2

V = TypeVar("V")


def _expires(_key: str, entry: tuple[object, float], now: float) -> float:
    return now + entry[1]  # entries are (value, their time to live)


def cache_key(query: str, top_k: int, filters: Sequence[common_pb2.MetadataFilter]) -> str:
    """Queries that differ only in case and spacing share a key; filter order does not matter."""
    normalised = " ".join(query.lower().split())
    canonical_filters = sorted((f.key, sorted(f.values)) for f in filters)
    return json.dumps([normalised, top_k, canonical_filters], separators=(",", ":"))


def cited_documents(sources: Iterable[common_pb2.ScoredDocument]) -> set[str]:
    """The ids of the documents sources come from (a chunk's document; else the id itself)."""
    return {s.document.chunk.document_id or s.document.id for s in sources}


class AnswerCache(Generic[V]):
    def __init__(
        self, ttl_s: float, stale_ttl_s: float, max_entries: int, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.ttl_s, self.stale_ttl_s = ttl_s, stale_ttl_s
        # (value, ttl) per entry: an answer promoted from the shared cache (L2) keeps only
        # the freshness it has left there.
        self.fresh: TLRUCache[str, tuple[V, float]] | None = (
            TLRUCache(maxsize=max_entries, ttu=_expires, timer=clock.monotonic)
            if ttl_s > 0
            else None
        )
        self.stale: TLRUCache[str, tuple[V, float]] | None = (
            TLRUCache(maxsize=max_entries, ttu=_expires, timer=clock.monotonic)
            if stale_ttl_s > 0
            else None
        )
        self.max_entries = max_entries
        self._cites: dict[str, frozenset[str]] = {}  # key -> document ids
        self._citing: dict[str, set[str]] = {}  # document id -> keys
        # Counts evictions: an answer computed before one (it may cite what was just
        # replaced) is not cached; see `put`.
        self.epoch = 0

    def get(self, key: str) -> V | None:
        entry = self.fresh.get(key) if self.fresh is not None else None
        return entry[0] if entry is not None else None

    def get_stale(self, key: str) -> V | None:
        entry = self.stale.get(key) if self.stale is not None else None
        return entry[0] if entry is not None else None

    def put(
        self,
        key: str,
        value: V,
        documents: Iterable[str] = (),
        epoch: int | None = None,
        *,
        ttl_s: float | None = None,
        stale_ttl_s: float | None = None,
    ) -> None:
        """Caches the answer, indexed by the documents it cites. With `epoch` (read when the
        answer's work began), an answer that started before an eviction is not cached.
        `ttl_s` / `stale_ttl_s` shorten an entry's life (what it has left elsewhere)."""
        if epoch is not None and epoch != self.epoch:
            return
        if self.fresh is None and self.stale is None:
            return
        fresh_s = self.ttl_s if ttl_s is None else min(ttl_s, self.ttl_s)
        stale_s = self.stale_ttl_s if stale_ttl_s is None else min(stale_ttl_s, self.stale_ttl_s)
        if self.fresh is not None and fresh_s > 0:
            self.fresh[key] = (value, fresh_s)
        if self.stale is not None and stale_s > 0:
            self.stale[key] = (value, stale_s)
        self._index(key, frozenset(documents))

    def _index(self, key: str, documents: frozenset[str]) -> None:
        for document in self._cites.get(key, frozenset()) - documents:
            self._citing.get(document, set()).discard(key)
        self._cites[key] = documents
        for document in documents:
            self._citing.setdefault(document, set()).add(key)
        if len(self._cites) > 2 * self.max_entries + 16:
            self._prune()

    def _prune(self) -> None:
        """Forgets index entries of answers both layers have dropped (expired or evicted)."""
        live = {k for k in self._cites if self._holds(k)}
        self._cites = {k: v for k, v in self._cites.items() if k in live}
        self._citing = {}
        for key, documents in self._cites.items():
            for document in documents:
                self._citing.setdefault(document, set()).add(key)

    def _holds(self, key: str) -> bool:
        return (self.fresh is not None and key in self.fresh) or (
            self.stale is not None and key in self.stale
        )

    def evict_documents(self, document_ids: Iterable[str]) -> int:
        """Drops every answer (fresh and stale) citing these documents; returns how many."""
        self.epoch += 1
        evicted = 0
        for document in set(document_ids):
            for key in self._citing.pop(document, set()):
                evicted += self._holds(key)
                if self.fresh is not None:
                    self.fresh.pop(key, None)
                if self.stale is not None:
                    self.stale.pop(key, None)
                for other in self._cites.pop(key, frozenset()):
                    if other != document:
                        self._citing.get(other, set()).discard(key)
        return evicted

    def clear(self) -> None:
        """Drops every answer: evictions were missed (another replica's, see
        gateway/shared/answer_store.py), so any answer may cite a replaced document."""
        self.epoch += 1
        for layer in (self.fresh, self.stale):
            if layer is not None:
                layer.clear()
        self._cites.clear()
        self._citing.clear()
