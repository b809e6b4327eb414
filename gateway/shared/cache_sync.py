"""Keeps every replica's own answer cache (L1) in step with evictions made anywhere.

A document (re)ingested or deleted through one replica evicts the answers citing it there,
in Redis (L2), and, through the eviction message on the shared event channel, in every
other replica's L1. Each eviction raises the shared eviction count; messages carry it, so a
replica that sees the count jump past the next one (a message missed while its
subscription was down), or sees it move in the poll without a message, drops its whole L1:
with evictions missed, any answer in it may cite a replaced document.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gateway.cache import AnswerCache
from gateway.query import QueryResult
from gateway.shared.answer_store import EVICTED, AnswerStore
from gateway.shared.events import Message

log = logging.getLogger("harag.shared")


class CacheSync:
    def __init__(self, store: AnswerStore, local: AnswerCache[QueryResult]) -> None:
        self.store = store
        self.local = local
        self.seen: int | None = None  # the last eviction count accounted for
        self.cleared = 0  # times L1 was dropped for missed evictions

    def start(self) -> None:
        if self.store.enabled:
            self.store.events.on(EVICTED, self._on_evicted)
            self.store.events.every_poll(self.poll)

    def evict_documents(self, documents: Iterable[str]) -> int:
        """Evicts here at once and everywhere else in the background; returns how many
        answers this replica dropped."""
        ids = list(documents)
        evicted = self.local.evict_documents(ids)
        if self.store.enabled and ids:

            async def shared() -> None:
                generation = await self.store.evict_documents(ids)
                if generation is not None:
                    self.account(generation)

            self.store.events.spawn("evict", shared)
        return evicted

    def account(self, generation: int) -> None:
        """Records an eviction count; a gap means evictions were missed: L1 goes."""
        if self.seen is not None and generation > self.seen + 1:
            self._clear(generation)
        self.seen = generation if self.seen is None else max(self.seen, generation)

    def _on_evicted(self, message: Message) -> None:
        documents = message.get("documents")
        if isinstance(documents, list):
            self.local.evict_documents(str(d) for d in documents)
        self.account(int(message["generation"]))

    async def poll(self) -> None:
        generation = await self.store.generation()
        if generation is None:
            return
        if self.seen is not None and generation > self.seen:
            self._clear(generation)
        self.seen = generation

    def _clear(self, generation: int) -> None:
        self.cleared += 1
        log.info("answer cache dropped: evictions were missed", extra={"generation": generation})
        self.local.clear()
