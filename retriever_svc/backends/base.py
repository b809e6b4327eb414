"""What every retriever backend shares: query/result types, errors, and the store-backed base.

A backend keeps an in-memory index derived from a `DocumentStore`. Writes go to the store
first (durable before anything changes in memory), then to the index. One lock serialises
index and store mutations; searches take it only while they read the index.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from retriever_svc.filters import Filter, MetadataIndex
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore, DocumentSummary, Replacement

DENSE = "dense"
LEXICAL = "lexical"


@dataclass(frozen=True)
class Query:
    text: str
    embedding: np.ndarray | None  # float32, any norm (None when the caller sent no vector)
    model: str
    top_k: int
    filters: tuple[Filter, ...] = ()
    # The caller sent an embedding that cannot rank anything (all zeros: a query with no word
    # tokens); a dense search then finds nothing instead of failing.
    blank_embedding: bool = False


@dataclass(frozen=True)
class Hit:
    document: StoredDocument
    score: float


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    index_size: int  # documents in the index that was searched


@dataclass(frozen=True)
class ModelStats:
    model: str
    dimension: int
    vectors: int
    index: str = "exact"  # "exact" or "hnsw"
    memory_bytes: int = 0


@dataclass(frozen=True)
class Stats:
    documents: int  # documents (a chunked document counts once)
    models: list[ModelStats]
    disk_bytes: int
    chunks: int = 0  # stored entries: chunks, plus whole documents written by Upsert
    memory_bytes: int = 0  # resident memory of the process


@dataclass(frozen=True)
class ReplaceOutcome:
    document_id: str
    stored: bool
    reason: str
    chunks: int


class RetrievalError(Exception):
    """A request the backend cannot serve as asked; the service maps each kind to a status."""


class NoQueryEmbedding(RetrievalError):
    pass


class UnknownModel(RetrievalError):
    def __init__(self, model: str, known: Sequence[str]) -> None:
        held = ", ".join(known) if known else "none"
        super().__init__(f"no index for embedding model {model!r}; models held: {held}")
        self.model = model
        self.known = list(known)


class QueryDimensionMismatch(RetrievalError):
    def __init__(self, model: str, expected: int, got: int) -> None:
        super().__init__(f"model {model!r} vectors have {expected} dimensions, query has {got}")


class TooManyModels(RetrievalError):
    """A write names an embedding model past the index's `max_models` bound."""

    def __init__(self, document_index: int, model: str, limit: int) -> None:
        super().__init__(
            f"model {model!r} would be a new vector index; this retriever holds at most "
            f"{limit} models (setting max_models)"
        )
        self.document_index = document_index
        self.model = model


@dataclass(frozen=True)
class DimensionConflict:
    document_index: int  # position in the upsert batch
    model: str
    expected: int
    got: int


class DimensionMismatch(RetrievalError):
    def __init__(self, conflicts: list[DimensionConflict]) -> None:
        super().__init__(f"{len(conflicts)} embeddings do not match their model's dimension")
        self.conflicts = conflicts


def resident_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class BackendUnavailable(RetrievalError):
    """The engine holding the index (a vector database) cannot be reached or did not answer
    in time; the caller may retry later or fall back (UNAVAILABLE)."""


class InvalidFilter(RetrievalError):
    """The engine refused the request's metadata filters (INVALID_ARGUMENT on filters)."""


class EntryTooLarge(RetrievalError):
    """An entry past the engine's size limits; `field` is relative to the entry."""

    def __init__(self, position: int, field: str, why: str) -> None:
        super().__init__(f"documents[{position}].{field}: {why}")
        self.position = position
        self.field = field
        self.why = why


def top_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, best first (argpartition, then sort only those k)."""
    if k <= 0 or scores.size == 0:
        return np.empty(0, dtype=np.intp)
    if k < scores.size:
        chosen = np.argpartition(-scores, k - 1)[:k]
    else:
        chosen = np.arange(scores.size)
    return chosen[np.argsort(-scores[chosen], kind="stable")]


class StoreBackedBackend:
    """Template for backends: subclasses implement the `_index_*`, `_check` and `_search` hooks."""

    mode: str

    def __init__(self, store: DocumentStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._metadata = MetadataIndex()
        for doc in store.documents.values():
            self._metadata.add(doc.id, doc.metadata_pairs())
        self._index_load(store.documents.values())

    # --- public API (blocking; call from a worker thread) -----------------------------------

    def upsert(self, documents: Sequence[StoredDocument]) -> int:
        with self._lock:
            self._check(documents)
            documents = self._own(documents)
            replaced: dict[str, StoredDocument | None] = {}
            pairs: list[tuple[StoredDocument | None, StoredDocument]] = []
            for doc in documents:  # a batch may name an id twice: the later one wins
                old = replaced[doc.id] if doc.id in replaced else self._store.documents.get(doc.id)
                pairs.append((old, doc))
                replaced[doc.id] = doc
            self._store.upsert(documents)
            for old, new in pairs:
                if old is not None:
                    self._metadata.remove(old.id, old.metadata_pairs())
                self._metadata.add(new.id, new.metadata_pairs())
                self._index_replace(old, new)
            self._after_store_write()
        return len(documents)

    def delete(self, ids: Iterable[str]) -> int:
        with self._lock:
            removed = self._store.delete(ids)
            self._unindex(removed)
            self._after_store_write()
        return len(removed)

    def replace(self, replacements: Sequence[Replacement]) -> list[ReplaceOutcome]:
        """Swaps each document's chunks; a document the index cannot take fails alone.

        The accepted documents are written as one store record, then the index changes
        under the lock with nothing in between, so a search sees each document all old or
        all new. Document ids must be unique (the servicer checks).
        """
        outcomes: dict[str, ReplaceOutcome] = {}
        with self._lock:
            accepted: list[Replacement] = []
            claimed: dict[str, str] = {}  # chunk id -> document, across this request
            dimensions = self._dimensions()
            for item in replacements:
                refusal = self._refusal(item, claimed, dimensions)
                if refusal:
                    outcomes[item.document_id] = ReplaceOutcome(item.document_id, False, refusal, 0)
                    continue
                item = Replacement(item.document_id, item.content_hash, self._own(item.chunks))
                accepted.append(item)
                for chunk in item.chunks:
                    claimed[chunk.id] = item.document_id
            removed = self._store.replace(accepted)
            self._unindex(removed)
            for item in accepted:
                for chunk in item.chunks:
                    self._metadata.add(chunk.id, chunk.metadata_pairs())
                    self._index_add(chunk)
                outcomes[item.document_id] = ReplaceOutcome(
                    item.document_id, True, self._note(item.chunks), len(item.chunks)
                )
            self._after_store_write()
        return [outcomes[item.document_id] for item in replacements]

    def remove_documents(self, document_ids: Iterable[str]) -> tuple[list[str], int]:
        """Removes every chunk of each stored document; returns (documents removed, chunks)."""
        with self._lock:
            removed = self._store.remove_documents(document_ids)
            self._unindex(removed)
            self._after_store_write()
        return list(dict.fromkeys(doc.document_id for doc in removed)), len(removed)

    def document_hashes(self, document_ids: Iterable[str]) -> dict[str, str]:
        with self._lock:
            hashes = self._store.hashes
            return {i: hashes[i] for i in document_ids if i in hashes}

    def list_documents(self, after: str, limit: int) -> list[DocumentSummary]:
        with self._lock:
            return self._store.list_documents(after, limit)

    def _unindex(self, removed: Iterable[StoredDocument]) -> None:
        for doc in removed:
            self._metadata.remove(doc.id, doc.metadata_pairs())
            self._index_remove(doc)

    def _refusal(
        self, item: Replacement, claimed: dict[str, str], dimensions: dict[str, int]
    ) -> str:
        """Why the index cannot take this document ("" when it can); lock held."""
        for chunk in item.chunks:
            owner = claimed.get(chunk.id) or self._store.owner(chunk.id)
            if owner is not None and owner != item.document_id:
                return f"chunk id {chunk.id!r} belongs to document {owner!r}"
        return self._check_dimensions(item.chunks, dimensions)

    def search(self, query: Query) -> SearchResult:
        self._prepare_search()
        with self._lock:
            allowed = self._metadata.matching(query.filters)
            return self._search(query, allowed)

    def stats(self) -> Stats:
        with self._lock:
            return Stats(
                len(self._store.groups),
                self._model_stats(),
                self._store.disk_bytes(),
                len(self._store.documents),
                resident_bytes(),
            )

    def close(self) -> None:
        with self._lock:
            try:
                self._on_close()
            finally:
                self._store.close()

    # --- hooks ------------------------------------------------------------------------------

    def _check(self, documents: Sequence[StoredDocument]) -> None:
        """Raises a RetrievalError when the batch conflicts with the index; lock held."""

    def _dimensions(self) -> dict[str, int]:
        """Vector dimension of each model index; lock held."""
        return {}

    def _check_dimensions(
        self, chunks: Sequence[StoredDocument], dimensions: dict[str, int]
    ) -> str:
        """Why these chunks' vectors do not fit ("" when they do); records the dimensions of
        models they introduce. Lock held."""
        return ""

    def _note(self, chunks: Sequence[StoredDocument]) -> str:
        """What of a just-indexed document this index cannot search ("" when nothing)."""
        return ""

    def _own(self, documents: Sequence[StoredDocument]) -> Sequence[StoredDocument]:
        """The objects the store will keep for the caller's documents (the same by default)."""
        return documents

    def _index_load(self, documents: Iterable[StoredDocument]) -> None:
        """Indexes every document of the freshly loaded store."""
        for doc in documents:
            self._index_add(doc)

    def _after_store_write(self) -> None:
        """Runs after each write, lock held (e.g. to persist the index beside a compaction)."""

    def _on_close(self) -> None:
        """Runs once before the store closes, lock held."""

    def _index_add(self, doc: StoredDocument) -> None:
        raise NotImplementedError

    def _index_remove(self, doc: StoredDocument) -> None:
        raise NotImplementedError

    def _index_replace(self, old: StoredDocument | None, new: StoredDocument) -> None:
        if old is not None:
            self._index_remove(old)
        self._index_add(new)

    def _prepare_search(self) -> None:
        """Slow preparation done without the lock held (e.g. rebuilding a stale index)."""

    def _search(self, query: Query, allowed: set[str] | None) -> SearchResult:
        """Ranks the documents; `allowed` is None when unfiltered. Lock held."""
        raise NotImplementedError

    def _model_stats(self) -> list[ModelStats]:
        return []
