"""Metadata filters: an inverted index from (key, value) to document ids.

A search's filters are an AND of "one of the document's values for key is one of values"
(a document's values for a key come from `metadata` and `metadata_values`, so tags=rag
matches a document tagged ["rag", "retrieval"]); answering them from the inverted index
costs the size of the matching posting lists, not a scan of every document.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Filter:
    key: str
    values: frozenset[str]


class MetadataIndex:
    def __init__(self) -> None:
        self._postings: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))

    def add(self, doc_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        for key, value in pairs:
            self._postings[key][value].add(doc_id)

    def remove(self, doc_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        for key, value in pairs:
            by_value = self._postings.get(key)
            if by_value is None or value not in by_value:
                continue
            by_value[value].discard(doc_id)
            if not by_value[value]:
                del by_value[value]
                if not by_value:
                    del self._postings[key]

    def matching(self, filters: Sequence[Filter]) -> set[str] | None:
        """Ids satisfying every filter, or None when there are no filters (everything matches)."""
        if not filters:
            return None
        result: set[str] | None = None
        # Smallest candidate set first keeps the intersections cheap.
        candidate_sets = sorted((self._ids_for(f) for f in filters), key=len)
        for ids in candidate_sets:
            result = set(ids) if result is None else result & ids
            if not result:
                return set()
        return result if result is not None else set()

    def _ids_for(self, flt: Filter) -> set[str]:
        by_value = self._postings.get(flt.key, {})
        ids: set[str] = set()
        for value in flt.values:
            ids |= by_value.get(value, set())
        return ids
