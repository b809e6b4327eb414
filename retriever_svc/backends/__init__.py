"""Retriever backends: the protocol the gRPC servicer talks to, and a factory by impl.

`primary` is dense search (one exact or HNSW index per embedding model, chosen by a query
planner: backends/dense.py, planner.py); `fallback` is lexical BM25. Both keep their
documents in the same durable `DocumentStore` format. With
vector_backend=milvus the primary keeps them in a Milvus server or cluster instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from retriever_svc.backends.base import Query, ReplaceOutcome, SearchResult, Stats
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore, DocumentSummary, Replacement

if TYPE_CHECKING:
    from retriever_svc.backends.dense import DenseSettings
    from retriever_svc.settings import RetrieverConfig


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


MILVUS_PASSWORD_VARIABLE = "HARAG_MILVUS_PASSWORD"


def open_configured(cfg: RetrieverConfig) -> Backend:
    """The backend a retriever process serves: by impl, and for the primary by vector_backend."""
    from retriever_svc.settings import data_dir

    if cfg.impl == "primary" and cfg.vector_backend == "milvus":
        from retriever_svc.backends.milvus import MilvusBackend
        from retriever_svc.backends.milvus_engine import EngineOptions

        m = cfg.milvus
        options = EngineOptions(
            uri=m.uri,
            user=m.user,
            password=_milvus_password(m.password_file),
            database=m.database,
            prefix=m.collection_prefix,
            timeout_s=m.timeout_s,
            hnsw_m=m.hnsw_m,
            hnsw_ef_construction=m.hnsw_ef_construction,
            consistency=m.consistency,
        )
        return MilvusBackend.connect(options, m.search_ef)
    return open_backend(
        cfg.impl, data_dir(cfg), cfg.snapshot_every, dense_settings(cfg), cfg.max_models
    )


def _milvus_password(password_file: str) -> str:
    """milvus_password_file, else HARAG_MILVUS_PASSWORD (never a setting, so that
    --check-config and config files never show it)."""
    if password_file:
        return Path(password_file).read_text(encoding="utf-8").strip()
    return os.environ.get(MILVUS_PASSWORD_VARIABLE, "").strip()


def dense_settings(cfg: RetrieverConfig) -> DenseSettings:
    """The dense index's settings (planner and HNSW graph) from the process's config."""
    from retriever_svc.backends.dense import DenseSettings
    from retriever_svc.backends.hnsw import HnswParams
    from retriever_svc.backends.planner import PlannerSettings

    return DenseSettings(
        PlannerSettings(
            cfg.dense_index, cfg.ann_exact_below, cfg.ann_filter_exact_max, cfg.ann_expansion_search
        ),
        HnswParams(
            cfg.ann_connectivity,
            cfg.ann_expansion_add,
            cfg.ann_expansion_search,
            cfg.ann_vector_type,
        ),
    )
