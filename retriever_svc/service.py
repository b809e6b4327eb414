"""RetrieverService over gRPC: validates requests, maps them to a backend, maps errors to statuses.

Backend calls block (numpy, index rebuilds, fsync), so each runs in a worker thread via
`asyncio.to_thread`; the backend's own lock keeps them consistent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar

import grpc
import numpy as np
from opentelemetry import trace

from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc
from retriever_svc.backends import Backend, open_configured
from retriever_svc.backends.base import (
    DENSE,
    LEXICAL,
    BackendUnavailable,
    DimensionMismatch,
    EntryTooLarge,
    InvalidFilter,
    NoQueryEmbedding,
    Query,
    QueryDimensionMismatch,
    TooManyModels,
    UnknownModel,
)
from retriever_svc.filters import Filter
from retriever_svc.messages import (
    document_message,
    is_zero_vector,
    searchable_vector,
    stored_document,
)
from retriever_svc.records import ChunkInfo, StoredDocument
from retriever_svc.settings import RetrieverConfig, data_dir
from retriever_svc.store import Replacement
from servicekit.errors import (
    MAX_VIOLATIONS,
    FieldViolations,
    abort,
    failed_precondition,
    unavailable,
)
from servicekit.limits import check_metadata, trim_documents
from servicekit.server import ServiceRegistration

T = TypeVar("T")
log = logging.getLogger("harag.retriever")
tracer = trace.get_tracer("harag.retriever")

SERVICE_NAME = retriever_pb2.DESCRIPTOR.services_by_name["RetrieverService"].full_name
# As many filters as a search may combine (the gateway allows 16; a filter is a set lookup).
MAX_FILTERS = 64
# ListStoredDocuments' page size when the request leaves it 0.
DEFAULT_PAGE_SIZE = 100
MODES = {
    DENSE: retriever_pb2.RETRIEVAL_MODE_DENSE,
    LEXICAL: retriever_pb2.RETRIEVAL_MODE_LEXICAL,
}


class RetrieverServicer(retriever_pb2_grpc.RetrieverServiceServicer):
    def __init__(self, backend: Backend, cfg: RetrieverConfig) -> None:
        self._backend = backend
        self._cfg = cfg
        self._max_top_k = cfg.max_top_k
        self._max_upsert_batch = cfg.max_upsert_batch
        self._max_list_page_size = cfg.max_list_page_size
        self._mode = MODES[backend.mode]
        self._dense = backend.mode == DENSE

    async def Search(
        self, request: retriever_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.SearchResponse:
        violations = FieldViolations()
        query = self._query(request, violations)
        await violations.abort_if_any(context)
        if self._dense and query.embedding is None:
            await abort(
                context,
                failed_precondition(
                    "the dense retriever needs query_embedding", "NO_QUERY_EMBEDDING"
                ),
            )
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
                result = await self._run(context, self._backend.search, query)
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
        except InvalidFilter as exc:
            violations.add("filters", str(exc))
            await abort(context, violations.status())
        response = retriever_pb2.SearchResponse(mode=self._mode, index_size=result.index_size)
        documents = [
            common_pb2.ScoredDocument(document=document_message(hit.document), score=hit.score)
            for hit in result.hits
        ]
        # Stored documents are bounded one by one, but top_k of them may still be more than
        # a client accepts: trim rather than fail (a failure would look like our outage).
        budget = self._cfg.replies.max_reply_bytes - response.ByteSize()
        trimmed = trim_documents(documents, budget)
        response.documents.extend(trimmed.documents)
        if trimmed.trimmed:
            response.trimmed = trimmed.note()
            log.info("search reply trimmed", extra={"note": response.trimmed})
        return response

    def _query(self, request: retriever_pb2.SearchRequest, violations: FieldViolations) -> Query:
        violations.check(
            1 <= request.top_k <= self._max_top_k, "top_k", f"must be in 1..{self._max_top_k}"
        )
        cfg = self._cfg
        violations.check(
            len(request.filters) <= MAX_FILTERS, "filters", f"at most {MAX_FILTERS} filters"
        )
        longest = cfg.documents.max_metadata_value_chars
        filters = []
        for i, flt in enumerate(request.filters[:MAX_FILTERS]):
            if not flt.key or not flt.values:
                violations.add(f"filters[{i}]", "needs a non-empty key and at least one value")
            elif max([len(flt.key), *map(len, flt.values)]) > longest:
                violations.add(
                    f"filters[{i}]",
                    f"a key or value is longer than {longest} characters "
                    "(setting max_metadata_value_chars)",
                )
            filters.append(Filter(flt.key, frozenset(flt.values)))
        violations.check(
            len(request.query_text) <= cfg.max_text_chars,
            "query_text",
            f"is {len(request.query_text)} characters; at most {cfg.max_text_chars} "
            "(setting max_text_chars)",
        )
        violations.check(
            len(request.model) <= cfg.max_id_chars,
            "model",
            f"is longer than {cfg.max_id_chars} characters (setting max_id_chars)",
        )
        violations.check(
            len(request.query_embedding.values) <= cfg.max_dimension,
            "query_embedding",
            f"has {len(request.query_embedding.values)} values; at most {cfg.max_dimension} "
            "(setting max_dimension)",
        )
        embedding = None
        blank = False
        if self._dense:
            if 0 < len(request.query_embedding.values) <= cfg.max_dimension:
                # A query with no word tokens (only emoji or punctuation) embeds to zeros: it
                # ranks nothing here, so it finds nothing rather than failing.
                blank = is_zero_vector(request.query_embedding)
                embedding = (
                    np.zeros(len(request.query_embedding.values), dtype=np.float32)
                    if blank
                    else searchable_vector(request.query_embedding)
                )
                violations.check(embedding is not None, "query_embedding", "must be finite")
                violations.check(bool(request.model), "model", "names query_embedding's model")
        else:
            violations.check(
                bool(request.query_text.strip()),
                "query_text",
                "the lexical retriever needs query text",
            )
        return Query(
            request.query_text, embedding, request.model, request.top_k, tuple(filters), blank
        )

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
            documents.append(self._document(i, item, violations, []))
        await violations.abort_if_any(context)
        try:
            upserted = await self._run(context, self._backend.upsert, documents)
        except TooManyModels as exc:
            violations.add(f"documents[{exc.document_index}].embeddings[{exc.model}]", str(exc))
            await abort(context, violations.status())
        except DimensionMismatch as exc:
            for c in exc.conflicts[:MAX_VIOLATIONS]:
                violations.add(
                    f"documents[{c.document_index}].embeddings[{c.model}]",
                    f"has {c.got} dimensions; the index of model {c.model!r} has {c.expected}",
                )
            await abort(context, violations.status())
        except EntryTooLarge as exc:
            violations.add(f"documents[{exc.position}].{exc.field}", exc.why)
            await abort(context, violations.status())
        except OSError as exc:
            await self._store_failed(context, "upsert", exc)
        log.debug("upserted", extra={"documents": upserted})
        return retriever_pb2.UpsertResponse(upserted=upserted)

    def _document(
        self,
        i: int,
        item: retriever_pb2.IndexedDocument,
        violations: FieldViolations,
        blank_models: list[str],
        path: str = "",
    ) -> StoredDocument:
        """Validates one document; a model whose vector is all zeros (a text with no word
        tokens) is left out and named in `blank_models`, the document stays valid."""
        doc = item.document
        cfg = self._cfg
        path = path or f"documents[{i}]"
        violations.check(bool(doc.id), f"{path}.document.id", "must not be empty")
        violations.check(
            len(doc.id) <= cfg.max_id_chars,
            f"{path}.document.id",
            f"is {len(doc.id)} characters; at most {cfg.max_id_chars} (setting max_id_chars)",
        )
        violations.check(bool(doc.text.strip()), f"{path}.document.text", "must not be empty")
        violations.check(
            len(doc.text) <= cfg.max_text_chars,
            f"{path}.document.text",
            f"is {len(doc.text)} characters; at most {cfg.max_text_chars} (setting max_text_chars)",
        )
        check_metadata(doc, cfg.documents, violations, f"{path}.document")
        embeddings: dict[str, np.ndarray] = {}
        if self._dense:  # the lexical retriever ignores embeddings, so it does not store them
            violations.check(
                len(item.embeddings) > 0,
                f"{path}.embeddings",
                "the dense retriever needs at least one embedding",
            )
            for model, embedding in item.embeddings.items():
                if len(model) > cfg.max_id_chars or len(embedding.values) > cfg.max_dimension:
                    violations.add(
                        f"{path}.embeddings",
                        f"model ids of at most {cfg.max_id_chars} characters (setting "
                        f"max_id_chars), vectors of at most {cfg.max_dimension} values "
                        "(setting max_dimension)",
                    )
                    continue
                vector = searchable_vector(embedding)
                if not model:
                    violations.add(f"{path}.embeddings", "embedding model ids must not be empty")
                elif is_zero_vector(embedding):
                    blank_models.append(model)
                elif vector is None:
                    violations.add(
                        f"{path}.embeddings[{model}]",
                        "must be a non-empty, finite vector",
                    )
                else:
                    embeddings[model] = vector
        return stored_document(doc, embeddings)

    async def Delete(
        self, request: retriever_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.DeleteResponse:
        await self._ids_violations(request.ids, "ids").abort_if_any(context)
        ids: Sequence[str] = [i for i in request.ids if i]
        try:
            deleted = await self._run(context, self._backend.delete, ids)
        except OSError as exc:
            await self._store_failed(context, "delete", exc)
        return retriever_pb2.DeleteResponse(deleted=deleted)

    async def GetStats(
        self, request: retriever_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.GetStatsResponse:
        stats = await self._run(context, self._backend.stats)
        return retriever_pb2.GetStatsResponse(
            documents=stats.documents,
            mode=self._mode,
            models=[
                retriever_pb2.ModelIndexStats(
                    model=m.model,
                    dimension=m.dimension,
                    vectors=m.vectors,
                    index=m.index,
                    memory_bytes=m.memory_bytes,
                )
                for m in stats.models
            ],
            disk_bytes=stats.disk_bytes,
            memory_bytes=stats.memory_bytes,
        )

    async def ReplaceDocuments(
        self, request: retriever_pb2.ReplaceDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.ReplaceDocumentsResponse:
        violations = FieldViolations()
        total = sum(len(d.chunks) for d in request.documents)
        violations.check(
            total <= self._max_upsert_batch,
            "documents",
            f"carries {total} chunks; at most {self._max_upsert_batch} per call "
            "(setting max_upsert_batch)",
        )
        first: dict[str, int] = {}
        for i, item in enumerate(request.documents):
            if item.document_id in first and len(violations.violations) < MAX_VIOLATIONS:
                violations.add(
                    f"documents[{i}].document_id",
                    f"{item.document_id!r} also names documents[{first[item.document_id]}]; "
                    "ids must be unique in a request",
                )
            first.setdefault(item.document_id, i)
        await violations.abort_if_any(context)

        refused: dict[int, str] = {}
        degraded: dict[int, str] = {}
        accepted: list[tuple[int, Replacement]] = []
        for i, item in enumerate(request.documents):
            replacement, problem, note = self._replacement(item)
            if replacement is None:
                refused[i] = problem
            else:
                accepted.append((i, replacement))
                degraded[i] = note
        try:
            outcomes = await self._run(context, self._backend.replace, [r for _, r in accepted])
        except OSError as exc:
            await self._store_failed(context, "replace", exc)
        results = [
            retriever_pb2.DocumentReplaceResult(
                document_id=item.document_id, stored=False, reason=refused.get(i, "")
            )
            for i, item in enumerate(request.documents)
        ]
        for (i, _), outcome in zip(accepted, outcomes, strict=True):
            result = results[i]
            result.stored = outcome.stored
            result.chunks = outcome.chunks
            notes = (degraded[i], outcome.reason) if outcome.stored else (outcome.reason,)
            result.reason = "; ".join(r for r in notes if r)
        log.debug(
            "replaced",
            extra={
                "documents": sum(r.stored for r in results),
                "refused": sum(not r.stored for r in results),
            },
        )
        return retriever_pb2.ReplaceDocumentsResponse(results=results)

    def _replacement(
        self, item: retriever_pb2.DocumentChunks
    ) -> tuple[Replacement | None, str, str]:
        """(replacement, "", degradation note), or (None, why the document is refused, "")."""
        if not item.document_id:
            return None, "document_id must not be empty", ""
        if len(item.document_id) > self._cfg.max_id_chars:
            return None, f"document_id is longer than {self._cfg.max_id_chars} characters", ""
        violations = FieldViolations()
        chunks: list[StoredDocument] = []
        ids: set[str] = set()
        blank_chunks = 0
        blank_models: set[str] = set()
        for j, indexed in enumerate(item.chunks):
            path = f"chunks[{j}]"
            blank: list[str] = []
            chunk = self._document(j, indexed, violations, blank, path)
            if chunk.chunk is None:
                chunk.chunk = ChunkInfo(item.document_id, j, len(item.chunks))
            elif chunk.chunk.document_id != item.document_id:
                violations.add(
                    f"{path}.document.chunk.document_id",
                    f"is {chunk.chunk.document_id!r}, not the document's id",
                )
            if chunk.id in ids:
                violations.add(f"{path}.document.id", f"{chunk.id!r} appears twice")
            ids.add(chunk.id)
            if blank:
                blank_chunks += 1
                blank_models.update(blank)
            chunks.append(chunk)
        if violations:
            shown = violations.violations[:3]
            more = len(violations.violations) - len(shown) + violations.omitted
            reason = "; ".join(f"{f}: {d}" for f, d in shown)
            return None, reason + (f" (and {more} more)" if more else ""), ""
        note = ""
        if blank_chunks:
            note = (
                f"no word tokens: {blank_chunks} of {len(chunks)} chunks embed to all zeros "
                f"for {', '.join(sorted(blank_models))}; stored without that dense vector, "
                "found lexically only"
            )
        return Replacement(item.document_id, item.content_hash, chunks), "", note

    async def RemoveDocuments(
        self, request: retriever_pb2.RemoveDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.RemoveDocumentsResponse:
        await self._ids_violations(request.document_ids, "document_ids").abort_if_any(context)
        try:
            removed, chunks = await self._run(
                context, self._backend.remove_documents, [i for i in request.document_ids if i]
            )
        except OSError as exc:
            await self._store_failed(context, "remove", exc)
        return retriever_pb2.RemoveDocumentsResponse(removed=removed, chunks_removed=chunks)

    async def GetDocumentHashes(
        self, request: retriever_pb2.GetDocumentHashesRequest, context: grpc.aio.ServicerContext
    ) -> retriever_pb2.GetDocumentHashesResponse:
        await self._ids_violations(request.document_ids, "document_ids").abort_if_any(context)
        hashes = await self._run(context, self._backend.document_hashes, list(request.document_ids))
        return retriever_pb2.GetDocumentHashesResponse(content_hashes=hashes)

    async def ListStoredDocuments(
        self,
        request: retriever_pb2.ListStoredDocumentsRequest,
        context: grpc.aio.ServicerContext,
    ) -> retriever_pb2.ListStoredDocumentsResponse:
        violations = FieldViolations()
        violations.check(
            0 <= request.page_size <= self._max_list_page_size,
            "page_size",
            f"must be in 0..{self._max_list_page_size} (0: the default, "
            f"{min(DEFAULT_PAGE_SIZE, self._max_list_page_size)})",
        )
        await violations.abort_if_any(context)
        size = request.page_size or min(DEFAULT_PAGE_SIZE, self._max_list_page_size)
        # One more than asked tells whether another page follows.
        page = await self._run(context, self._backend.list_documents, request.page_token, size + 1)
        more = len(page) > size
        page = page[:size]
        return retriever_pb2.ListStoredDocumentsResponse(
            documents=[
                common_pb2.StoredDocument(
                    document_id=d.document_id,
                    title=d.title,
                    chunks=d.chunks,
                    content_hash=d.content_hash,
                )
                for d in page
            ],
            next_page_token=page[-1].document_id if more and page else "",
        )

    def _ids_violations(self, ids: Sequence[str], field: str) -> FieldViolations:
        """A call naming documents names at most max_upsert_batch of them, each id bounded."""
        violations = FieldViolations()
        limit = self._max_upsert_batch
        violations.check(
            len(ids) <= limit,
            field,
            f"names {len(ids)} ids; at most {limit} per call (setting max_upsert_batch)",
        )
        longest = max(map(len, ids), default=0)
        violations.check(
            longest <= self._cfg.max_id_chars,
            field,
            f"an id of {longest} characters; at most {self._cfg.max_id_chars} "
            "(setting max_id_chars)",
        )
        return violations

    @staticmethod
    async def _run(context: grpc.aio.ServicerContext, call: Callable[..., T], *args: object) -> T:
        """Runs a blocking backend call off the event loop; an unreachable engine (a vector
        database) becomes UNAVAILABLE, so the gateway's breaker and fallback take over."""
        try:
            return await asyncio.to_thread(call, *args)
        except BackendUnavailable as exc:
            log.warning("index engine unavailable", extra={"error": str(exc)})
            await abort(context, unavailable(str(exc), "INDEX_ENGINE_UNAVAILABLE"))

    @staticmethod
    async def _store_failed(context: grpc.aio.ServicerContext, what: str, exc: OSError) -> NoReturn:
        # Nothing was acknowledged and memory is unchanged, so the caller may retry the call.
        log.error("store write failed", extra={"operation": what, "error": str(exc)})
        await context.abort(grpc.StatusCode.INTERNAL, f"{what} not persisted: {exc}")
        raise AssertionError("unreachable: abort raises")


def build(
    cfg: RetrieverConfig,
) -> tuple[list[ServiceRegistration], list[Callable[[], Awaitable[None]]]]:
    backend = open_configured(cfg)
    try:
        stats = backend.stats()
    except BackendUnavailable as exc:
        # Serve anyway: each call answers UNAVAILABLE until the engine is back.
        log.warning("index engine unavailable at start", extra={"error": str(exc)})
    else:
        log.info(
            "index loaded",
            extra={
                "data_dir": str(data_dir(cfg).resolve()),
                "vector_backend": cfg.vector_backend,
                "mode": backend.mode,
                "documents": stats.documents,
                "chunks": stats.chunks,
                "disk_bytes": stats.disk_bytes,
                "memory_bytes": stats.memory_bytes,
                "indexes": {m.model: f"{m.index} ({m.vectors} vectors)" for m in stats.models},
            },
        )
    servicer = RetrieverServicer(backend, cfg)

    async def close() -> None:
        await asyncio.to_thread(backend.close)

    registration = ServiceRegistration(
        name=SERVICE_NAME,
        add=lambda server: retriever_pb2_grpc.add_RetrieverServiceServicer_to_server(
            servicer, server
        ),
    )
    return [registration], [close]
