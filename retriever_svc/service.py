"""RetrieverService over gRPC: validates requests, maps them to a backend, maps errors to statuses.

Backend calls block (numpy, index rebuilds, fsync), so each runs in a worker thread via
`asyncio.to_thread`; the backend's own lock keeps them consistent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import grpc
import numpy as np
from opentelemetry import trace

from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc
from retriever_svc.backends import Backend, open_backend
from retriever_svc.backends.base import (
    DENSE,
    LEXICAL,
    DimensionMismatch,
    NoQueryEmbedding,
    Query,
    QueryDimensionMismatch,
    UnknownModel,
)
from retriever_svc.filters import Filter
from retriever_svc.records import StoredDocument
from retriever_svc.settings import RetrieverConfig, data_dir
from servicekit.errors import FieldViolations, abort, failed_precondition
from servicekit.server import ServiceRegistration

log = logging.getLogger("harag.retriever")
tracer = trace.get_tracer("harag.retriever")

SERVICE_NAME = retriever_pb2.DESCRIPTOR.services_by_name["RetrieverService"].full_name
# Google's error model carries violations in trailing metadata (8 KiB by default); report at
# most this many so a batch full of bad documents still yields a deliverable error.
MAX_VIOLATIONS = 10
MODES = {
    DENSE: retriever_pb2.RETRIEVAL_MODE_DENSE,
    LEXICAL: retriever_pb2.RETRIEVAL_MODE_LEXICAL,
}


def _vector(embedding: common_pb2.Embedding) -> np.ndarray | None:
    """The embedding as float32, or None when it cannot be searched (empty, zero, NaN/inf)."""
    vector = np.array(embedding.values, dtype=np.float32)
    if vector.size == 0 or not np.isfinite(vector).all() or not vector.any():
        return None
    return vector


class RetrieverServicer(retriever_pb2_grpc.RetrieverServiceServicer):
    def __init__(self, backend: Backend, max_top_k: int = 50, max_upsert_batch: int = 1024) -> None:
        self._backend = backend
        self._max_top_k = max_top_k
        self._max_upsert_batch = max_upsert_batch
        self._mode = MODES[backend.mode]
        self._dense = backend.mode == DENSE

    async def Search(
        self, request: retriever_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.SearchResponse:
        violations = FieldViolations()
        query = self._query(request, violations)
        await violations.abort_if_any(context)
        if self._dense and query.embedding is None:
            await abort(context, failed_precondition(
                "the dense retriever needs query_embedding", "NO_QUERY_EMBEDDING"
            ))
        try:
            with tracer.start_as_current_span(
                "index search",
                attributes={
                    "harag.retrieval.mode": self._backend.mode,
                    "harag.model": query.model,
                    "harag.top_k": query.top_k,
                    "harag.filters": len(query.filters),
                },
            ) as span:
                result = await asyncio.to_thread(self._backend.search, query)
                span.set_attributes(
                    {"harag.index_size": result.index_size, "harag.hits": len(result.hits)}
                )
        except NoQueryEmbedding as exc:
            await abort(context, failed_precondition(str(exc), "NO_QUERY_EMBEDDING"))
        except UnknownModel as exc:
            await abort(context, failed_precondition(str(exc), "UNKNOWN_MODEL"))
        except QueryDimensionMismatch as exc:
            violations.add("query_embedding", str(exc))
            await abort(context, violations.status())
        return retriever_pb2.SearchResponse(
            documents=[
                common_pb2.ScoredDocument(
                    document=common_pb2.Document(
                        id=hit.document.id, text=hit.document.text, metadata=hit.document.metadata
                    ),
                    score=hit.score,
                )
                for hit in result.hits
            ],
            mode=self._mode,
            index_size=result.index_size,
        )

    def _query(self, request: retriever_pb2.SearchRequest, violations: FieldViolations) -> Query:
        violations.check(
            1 <= request.top_k <= self._max_top_k, "top_k", f"must be in 1..{self._max_top_k}"
        )
        filters = []
        for i, flt in enumerate(request.filters):
            if (not flt.key or not flt.values) and len(violations.violations) < MAX_VIOLATIONS:
                violations.add(f"filters[{i}]", "needs a non-empty key and at least one value")
            filters.append(Filter(flt.key, frozenset(flt.values)))
        embedding = None
        if self._dense:
            if len(request.query_embedding.values) > 0:
                embedding = _vector(request.query_embedding)
                violations.check(
                    embedding is not None, "query_embedding", "must be finite and non-zero"
                )
                violations.check(bool(request.model), "model", "names query_embedding's model")
        else:
            violations.check(
                bool(request.query_text.strip()), "query_text",
                "the lexical retriever needs query text",
            )
        return Query(request.query_text, embedding, request.model, request.top_k, tuple(filters))

    async def Upsert(
        self, request: retriever_pb2.UpsertRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.UpsertResponse:
        violations = FieldViolations()
        if len(request.documents) > self._max_upsert_batch:
            violations.add("documents", f"at most {self._max_upsert_batch} documents per call")
            await violations.abort_if_any(context)
        documents = []
        for i, item in enumerate(request.documents):
            if len(violations.violations) >= MAX_VIOLATIONS:
                break
            documents.append(self._document(i, item, violations))
        await violations.abort_if_any(context)
        try:
            upserted = await asyncio.to_thread(self._backend.upsert, documents)
        except DimensionMismatch as exc:
            for c in exc.conflicts[:MAX_VIOLATIONS]:
                violations.add(
                    f"documents[{c.document_index}].embeddings[{c.model}]",
                    f"has {c.got} dimensions; the index of model {c.model!r} has {c.expected}",
                )
            await abort(context, violations.status())
        except OSError as exc:
            await self._store_failed(context, "upsert", exc)
        log.debug("upserted", extra={"documents": upserted})
        return retriever_pb2.UpsertResponse(upserted=upserted)

    def _document(
        self, i: int, item: retriever_pb2.IndexedDocument, violations: FieldViolations
    ) -> StoredDocument:
        doc = item.document
        path = f"documents[{i}]"
        violations.check(bool(doc.id), f"{path}.document.id", "must not be empty")
        violations.check(bool(doc.text.strip()), f"{path}.document.text", "must not be empty")
        embeddings: dict[str, np.ndarray] = {}
        if self._dense:  # the lexical retriever ignores embeddings, so it does not store them
            violations.check(
                len(item.embeddings) > 0, f"{path}.embeddings",
                "the dense retriever needs at least one embedding",
            )
            for model, embedding in item.embeddings.items():
                vector = _vector(embedding)
                if not model:
                    violations.add(f"{path}.embeddings", "embedding model ids must not be empty")
                elif vector is None:
                    violations.add(
                        f"{path}.embeddings[{model}]",
                        "must be a non-empty, finite, non-zero vector",
                    )
                else:
                    embeddings[model] = vector
        return StoredDocument(doc.id, doc.text, dict(doc.metadata), embeddings)

    async def Delete(
        self, request: retriever_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.DeleteResponse:
        ids: Sequence[str] = [i for i in request.ids if i]
        try:
            deleted = await asyncio.to_thread(self._backend.delete, ids)
        except OSError as exc:
            await self._store_failed(context, "delete", exc)
        return retriever_pb2.DeleteResponse(deleted=deleted)

    async def GetStats(
        self, request: retriever_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.GetStatsResponse:
        stats = await asyncio.to_thread(self._backend.stats)
        return retriever_pb2.GetStatsResponse(
            documents=stats.documents,
            mode=self._mode,
            models=[
                retriever_pb2.ModelIndexStats(
                    model=m.model, dimension=m.dimension, vectors=m.vectors
                )
                for m in stats.models
            ],
            disk_bytes=stats.disk_bytes,
        )

    @staticmethod
    async def _store_failed(
        context: grpc.aio.ServicerContext, what: str, exc: OSError
    ) -> NoReturn:
        # Nothing was acknowledged and memory is unchanged, so the caller may retry the call.
        log.error("store write failed", extra={"operation": what, "error": str(exc)})
        await context.abort(grpc.StatusCode.INTERNAL, f"{what} not persisted: {exc}")
        raise AssertionError("unreachable: abort raises")


def build(
    cfg: RetrieverConfig,
) -> tuple[list[ServiceRegistration], list[Callable[[], Awaitable[None]]]]:
    directory = data_dir(cfg)
    backend = open_backend(cfg.impl, directory, cfg.snapshot_every)
    stats = backend.stats()
    log.info(
        "index loaded",
        extra={
            "data_dir": str(directory.resolve()),
            "mode": backend.mode,
            "documents": stats.documents,
            "disk_bytes": stats.disk_bytes,
        },
    )
    servicer = RetrieverServicer(backend, cfg.max_top_k, cfg.max_upsert_batch)

    async def close() -> None:
        await asyncio.to_thread(backend.close)

    registration = ServiceRegistration(
        name=SERVICE_NAME,
        add=lambda server: retriever_pb2_grpc.add_RetrieverServiceServicer_to_server(
            servicer, server
        ),
    )
    return [registration], [close]
