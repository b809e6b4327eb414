"""Retriever backends: the protocol the gRPC servicer talks to, and a factory by impl.

`primary` is dense search (one exact or HNSW index per embedding model, chosen by a query
planner: backends/dense.py, planner.py); `fallback` is lexical BM25. Both keep their
documents in the same durable `DocumentStore` format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from retriever_svc.backends.base import Query, ReplaceOutcome, SearchResult, Stats
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore, DocumentSummary, Replacement

if TYPE_CHECKING:
    from retriever_svc.backends.dense import DenseSettings


class Backend(Protocol):
    """Blocking calls, safe from several threads; the servicer runs them off the event loop."""

    mode: str  # base.DENSE or base.LEXICAL

    def search(self, query: Query) -> SearchResult: ...

    def upsert(self, documents: Sequence[StoredDocument]) -> int: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def replace(self, replacements: Sequence[Replacement]) -> list[ReplaceOutcome]: ...

    def remove_documents(self, document_ids: Sequence[str]) -> tuple[list[str], int]: ...

    def document_hashes(self, document_ids: Sequence[str]) -> dict[str, str]: ...

    def list_documents(self, after: str, limit: int) -> list[DocumentSummary]: ...

    def stats(self) -> Stats: ...

    def close(self) -> None: ...


def open_backend(
    impl: str,
    data_dir: str | Path,
    snapshot_every: int = 500,
    dense: DenseSettings | None = None,
    max_models: int = 8,
) -> Backend:
    """Opens (loading, or creating) the store in `data_dir` and builds `impl`'s index on it;
    a dense index holds at most `max_models` embedding models."""
    # Imported here so a process loads only the backend it serves.
    if impl == "primary":
        from retriever_svc.backends.dense import DenseBackend
        from retriever_svc.backends.persistence import IndexFiles

        store = DocumentStore(data_dir, snapshot_every)
        return DenseBackend(store, dense, IndexFiles(data_dir), max_models)
    if impl == "fallback":
        from retriever_svc.backends.lexical import LexicalBackend

        return LexicalBackend(DocumentStore(data_dir, snapshot_every))
    raise ValueError(f"unknown retriever impl {impl!r}; expected primary or fallback")
