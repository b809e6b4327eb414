"""The answer cache: fresh answers (LRU + TTL) and the last good answer per query (stale).

Only answers served entirely by primaries are cached, so an outage never keeps serving
degraded answers after recovery. The stale layer outlives the fresh one: when every
generator fails, the last good answer for the same query is better than no answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Generic, TypeVar

from cachetools import TTLCache

from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from harag.v1 import common_pb2

V = TypeVar("V")


def cache_key(query: str, top_k: int, filters: Sequence[common_pb2.MetadataFilter]) -> str:
    """Queries that differ only in case and spacing share a key; filter order does not matter."""
    normalised = " ".join(query.lower().split())
    canonical_filters = sorted((f.key, sorted(f.values)) for f in filters)
    return json.dumps([normalised, top_k, canonical_filters], separators=(",", ":"))


class AnswerCache(Generic[V]):
    def __init__(
        self, ttl_s: float, stale_ttl_s: float, max_entries: int, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.fresh: TTLCache[str, V] | None = (
            TTLCache(maxsize=max_entries, ttl=ttl_s, timer=clock.monotonic) if ttl_s > 0 else None
        )
        self.stale: TTLCache[str, V] | None = (
            TTLCache(maxsize=max_entries, ttl=stale_ttl_s, timer=clock.monotonic)
            if stale_ttl_s > 0
            else None
        )

    def get(self, key: str) -> V | None:
        return self.fresh.get(key) if self.fresh is not None else None

    def get_stale(self, key: str) -> V | None:
        return self.stale.get(key) if self.stale is not None else None

    def put(self, key: str, value: V) -> None:
        if self.fresh is not None:
            self.fresh[key] = value
        if self.stale is not None:
            self.stale[key] = value
