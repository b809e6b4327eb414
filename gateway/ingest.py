"""Ingest: cut each document into chunks, embed every chunk with every embedder, and replace
the document's chunks in every retriever.

Ingestion is not a fallback chain: every configured embedder contributes its own vector
space (so a query embedded by the fallback model finds fallback-model vectors), and every
retriever gets every document (so the lexical fallback can answer when the dense primary
cannot). Bad documents fail alone; a missing embedder or retriever makes the documents
PARTIAL, naming what is missing. The response is a batch report.

A document's content hash covers its text, metadata, the chunking settings and the
embedding models; when every retriever already holds a document with that hash it is
UNCHANGED and nothing is embedded. A changed document's chunks are replaced in one
ReplaceDocuments call per retriever, which the retrievers apply atomically per document.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from gateway.chunking import chunk_text, title_of
from gateway.config import ChunkingConfig, IngestConfig
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.retry import RetryPolicy, decide_retry
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import common_pb2, embedder_pb2, gateway_pb2, retriever_pb2

log = logging.getLogger("harag.ingest")
T = TypeVar("T")

MAX_ID_CHARS = 256
# Embed and Upsert are idempotent, so a transient failure is worth a short retry: three
# attempts in all, the waits drawn at random below 0.1 s and then 0.2 s. An overloaded
# upstream (RESOURCE_EXHAUSTED) is not retried. Ingest spends no retry budget: it is rare
# operator work, and the queries' budget must not pay for it.
INGEST_RETRY = RetryPolicy(
    max_attempts=3,
    initial_backoff_s=0.1,
    max_backoff_s=0.2,
    multiplier=2.0,
    retryable_codes=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}),
    pushback_only_codes=frozenset(),
)


# About 4 MB of ReplaceDocuments (a chunk's text plus two models' vectors is ~4 KB).
MAX_CHUNKS_PER_WRITE = 1024
CHUNKER_VERSION = 1  # part of every content hash: a new chunker re-ingests everything


@dataclass
class _Doc:
    index: int
    document: common_pb2.Document
    reason: str = ""  # why it failed
    content_hash: str = ""
    unchanged: bool = False
    chunks: list[common_pb2.Document] = field(default_factory=list)
    # Per chunk position: model id -> vector.
    embeddings: list[dict[str, list[float]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stored_in: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "retriever: reason"
    notes: list[str] = field(default_factory=list)  # stored, but degraded: "retriever: reason"


def document_id(text: str) -> str:
    return "doc-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _validate(docs: list[common_pb2.Document], cfg: IngestConfig) -> list[_Doc]:
    seen: set[str] = set()
    checked = []
    for index, raw in enumerate(docs):
        doc = common_pb2.Document()
        doc.CopyFrom(raw)
        doc.ClearField("chunk")
        if not doc.id:
            doc.id = document_id(doc.text)
        item = _Doc(index, doc)
        if not doc.text.strip():
            item.reason = "text is empty"
        elif len(doc.text) > cfg.max_document_chars:
            item.reason = (
                f"text is {len(doc.text)} characters; at most {cfg.max_document_chars} "
                "(setting max_document_chars)"
            )
        elif len(doc.id) > MAX_ID_CHARS:
            item.reason = f"id is longer than {MAX_ID_CHARS} characters"
        elif doc.id in seen:
            item.reason = f"duplicate id {doc.id!r} in this request"
        seen.add(doc.id)
        checked.append(item)
    return checked


def content_hash(
    document: common_pb2.Document, chunking: ChunkingConfig, models: Iterable[str]
) -> str:
    """What a stored version is compared by: text, metadata, chunking and embedding models."""
    canonical = json.dumps(
        {
            "text": document.text,
            "metadata": sorted(document.metadata.items()),
            "metadata_values": sorted(
                (k, list(v.values)) for k, v in document.metadata_values.items()
            ),
            "chunking": [
                CHUNKER_VERSION,
                chunking.chunk_size_tokens,
                chunking.chunk_overlap_tokens,
            ],
            "models": sorted(models),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def chunk_documents(
    document: common_pb2.Document, chunking: ChunkingConfig
) -> list[common_pb2.Document]:
    """The document's chunks as the retrievers store them: id "<doc>#<pos>", Chunk filled."""
    pieces = chunk_text(document.text, chunking.chunk_size_tokens, chunking.chunk_overlap_tokens)
    title = title_of(document.id, document.text, document.metadata)
    chunks = []
    for position, piece in enumerate(pieces):
        chunk = common_pb2.Document(
            id=f"{document.id}#{position}",
            text=piece.text,
            metadata=document.metadata,
            metadata_values=document.metadata_values,
            chunk=common_pb2.Chunk(
                document_id=document.id,
                position=position,
                count=len(pieces),
                title=title,
                heading_path=piece.heading_path,
                page=piece.page,
            ),
        )
        chunks.append(chunk)
    return chunks


@dataclass(frozen=True)
class Retrying:
    """How ingest retries a write: the policy, and the clock and randomness it waits by."""

    policy: RetryPolicy = INGEST_RETRY
    clock: Clock = SYSTEM_CLOCK
    rng: random.Random = field(default_factory=random.Random)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Runs `attempt` until it succeeds or the policy says stop; raises the last error."""
        made = 0
        while True:
            try:
                return await attempt()
            except grpc.aio.AioRpcError as exc:
                made += 1
                decision = decide_retry(
                    exc.code(),
                    attempts_made=made,
                    policy=self.policy,
                    rng=self.rng,
                    trailing_metadata=exc.trailing_metadata(),
                )
                if not decision.retry:
                    raise
                await self.clock.sleep(decision.delay_s)

    async def call_or_none(
        self, attempt: Callable[[], Awaitable[T]], failed: str, upstream: str
    ) -> T | None:
        """`call`, but a final failure is logged as `failed` (with the upstream, code and
        detail) and returns None: one upstream's failure is one document's or step's, not the
        whole request's."""
        try:
            return await self.call(attempt)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                failed,
                extra={"upstream": upstream, "code": exc.code().name, "error": exc.details()},
            )
            return None


@dataclass
class _Embedder:
    upstream: Upstream
    model: str
    max_batch_size: int
    max_text_chars: int


async def _model_info(
    upstream: Upstream, cfg: IngestConfig, retrying: Retrying
) -> _Embedder | None:
    info: embedder_pb2.GetModelInfoResponse | None = await retrying.call_or_none(
        lambda: upstream.stub.GetModelInfo(
            embedder_pb2.GetModelInfoRequest(), timeout=cfg.timeout_s
        ),
        "ingest model info failed",
        upstream.name,
    )
    if info is None:
        return None
    return _Embedder(
        upstream,
        info.model,
        max(1, min(cfg.batch_size, info.max_batch_size or cfg.batch_size)),
        info.max_text_chars or 0,
    )


async def _stored_hashes(
    upstream: Upstream, ids: list[str], cfg: IngestConfig, retrying: Retrying
) -> dict[str, str]:
    """The retriever's content hashes for these ids; empty when it cannot say."""
    if not ids:
        return {}
    request = retriever_pb2.GetDocumentHashesRequest(document_ids=ids)
    reply: retriever_pb2.GetDocumentHashesResponse | None = await retrying.call_or_none(
        lambda: upstream.stub.GetDocumentHashes(request, timeout=cfg.timeout_s),
        "ingest hash lookup failed",
        upstream.name,
    )
    return dict(reply.content_hashes) if reply is not None else {}


async def _embed_with(
    embedder: _Embedder, batch: list[_Doc], cfg: IngestConfig, retrying: Retrying
) -> None:
    """Adds this embedder's vectors to every chunk; a document whose chunks it could not
    embed lists it as missing."""
    work = [(d, i) for d in batch for i in range(len(d.chunks))]
    failed: set[int] = set()
    upstream = embedder.upstream
    for start in range(0, len(work), embedder.max_batch_size):
        part = work[start : start + embedder.max_batch_size]
        request = embedder_pb2.EmbedRequest(
            texts=[d.chunks[i].text for d, i in part],
            input_type=embedder_pb2.EMBED_INPUT_TYPE_PASSAGE,
        )
        try:
            reply: embedder_pb2.EmbedResponse = await retrying.call(
                functools.partial(upstream.stub.Embed, request, timeout=cfg.timeout_s)
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "ingest embed failed",
                extra={"upstream": upstream.name, "code": exc.code().name},
            )
            failed.update(id(d) for d, _ in part)
            continue
        for (d, i), vector in zip(part, reply.embeddings, strict=True):
            d.embeddings[i][reply.model or embedder.model] = list(vector.values)
    for d in batch:
        if id(d) in failed:
            d.missing.append(upstream.name)
            for vectors in d.embeddings:
                vectors.pop(embedder.model, None)


async def _replace_in(
    upstream: Upstream, batch: list[_Doc], cfg: IngestConfig, retrying: Retrying
) -> None:
    request = retriever_pb2.ReplaceDocumentsRequest(
        documents=[
            retriever_pb2.DocumentChunks(
                document_id=d.document.id,
                content_hash=d.content_hash,
                chunks=[
                    retriever_pb2.IndexedDocument(
                        document=chunk,
                        embeddings={m: common_pb2.Embedding(values=v) for m, v in vectors.items()},
                    )
                    for chunk, vectors in zip(d.chunks, d.embeddings, strict=True)
                ],
            )
            for d in batch
        ]
    )
    try:
        reply: retriever_pb2.ReplaceDocumentsResponse = await retrying.call(
            lambda: upstream.stub.ReplaceDocuments(request, timeout=cfg.timeout_s)
        )
    except grpc.aio.AioRpcError as exc:
        log.warning(
            "ingest replace failed",
            extra={"upstream": upstream.name, "code": exc.code().name, "error": exc.details()},
        )
        for d in batch:
            d.missing.append(upstream.name)
            d.refused.append(f"{upstream.name}: {exc.code().name} {exc.details() or ''}".strip())
        return
    results = {r.document_id: r for r in reply.results}
    for d in batch:
        result = results.get(d.document.id)
        if result is None or not result.stored:
            d.missing.append(upstream.name)
            reason = result.reason if result is not None else "not in the reply"
            d.refused.append(f"{upstream.name}: {reason}")
            continue
        d.stored_in.append(upstream.name)
        if result.reason:
            d.notes.append(f"{upstream.name}: {result.reason}")


async def ingest(
    upstreams: Upstreams,
    cfg: IngestConfig,
    documents: list[common_pb2.Document],
    retrying: Retrying | None = None,
    chunking: ChunkingConfig | None = None,
    on_changed: Callable[[list[str]], object] | None = None,
) -> gateway_pb2.IngestResponse:
    """Ingests the documents; `on_changed` hears the ids of every document (re)stored."""
    retrying = retrying or Retrying()
    chunking = chunking or ChunkingConfig()
    started = time.perf_counter()
    docs = _validate(documents, cfg)
    valid = [d for d in docs if not d.reason]
    retrievers = upstreams.chains["retriever"]
    found = await asyncio.gather(
        *(_model_info(u, cfg, retrying) for u in upstreams.chains["embedder"])
    )
    embedders = [e for e in found if e is not None]
    unreachable = [
        u.name for u, e in zip(upstreams.chains["embedder"], found, strict=True) if e is None
    ]
    models = sorted({e.model for e in embedders})
    for d in valid:
        d.content_hash = content_hash(d.document, chunking, models)
    held = await asyncio.gather(
        *(_stored_hashes(u, [d.document.id for d in valid], cfg, retrying) for u in retrievers)
    )
    for d in valid:
        d.unchanged = bool(retrievers) and all(
            hashes.get(d.document.id) == d.content_hash for hashes in held
        )
    todo = [d for d in valid if not d.unchanged]
    for d in todo:
        d.chunks = chunk_documents(d.document, chunking)
        d.embeddings = [{} for _ in d.chunks]
        d.missing += unreachable
        if not d.chunks:
            d.reason = "no text to index"
        for e in embedders:
            too_long = [c for c in d.chunks if e.max_text_chars and len(c.text) > e.max_text_chars]
            if too_long:
                d.reason = (
                    f"a chunk has {len(too_long[0].text)} characters; {e.upstream.name} takes "
                    f"at most {e.max_text_chars} (lower chunk_size_tokens)"
                )
    todo = [d for d in todo if not d.reason]
    for batch in _batches(todo, cfg.batch_size):
        await asyncio.gather(*(_embed_with(e, batch, cfg, retrying) for e in embedders))
        for d in batch:
            # The stored hash names the models actually embedded, so a document that missed
            # one is not UNCHANGED next time: re-ingesting it heals the gap.
            present = [e.model for e in embedders if e.upstream.name not in d.missing]
            if len(present) != len(embedders):
                d.content_hash = content_hash(d.document, chunking, present)
        await asyncio.gather(*(_replace_in(u, batch, cfg, retrying) for u in retrievers))
        changed = [d.document.id for d in batch if d.stored_in]
        if changed and on_changed is not None:
            on_changed(changed)

    results = [_result(d) for d in docs]
    response = gateway_pb2.IngestResponse(
        results=results,
        succeeded=sum(r.status != gateway_pb2.INGEST_STATUS_FAILED for r in results),
        failed=sum(r.status == gateway_pb2.INGEST_STATUS_FAILED for r in results),
        elapsed_ms=(time.perf_counter() - started) * 1000,
        models=models,
        unchanged=sum(d.unchanged for d in docs),
        chunks=sum(len(d.chunks) for d in docs if d.stored_in),
    )
    log.info(
        "ingest finished",
        extra={
            "succeeded": response.succeeded,
            "failed": response.failed,
            "unchanged": response.unchanged,
            "chunks": response.chunks,
            "elapsed_ms": round(response.elapsed_ms, 1),
            "models": models,
        },
    )
    return response


def _batches(docs: list[_Doc], max_docs: int) -> Iterator[list[_Doc]]:
    """At most max_docs documents and (past the first document) MAX_CHUNKS_PER_WRITE chunks
    per batch, so a ReplaceDocuments request stays far below the gRPC message limit."""
    batch: list[_Doc] = []
    chunks = 0
    for d in docs:
        if batch and (len(batch) >= max_docs or chunks + len(d.chunks) > MAX_CHUNKS_PER_WRITE):
            yield batch
            batch, chunks = [], 0
        batch.append(d)
        chunks += len(d.chunks)
    if batch:
        yield batch


def _result(d: _Doc) -> gateway_pb2.IngestResult:
    chunks = len(d.chunks)
    if d.unchanged:
        status, reason = gateway_pb2.INGEST_STATUS_UNCHANGED, ""
    elif d.reason:
        status, reason = gateway_pb2.INGEST_STATUS_FAILED, d.reason
    elif not d.stored_in:
        status = gateway_pb2.INGEST_STATUS_FAILED
        reason = "no retriever stored the document" + (
            ": " + "; ".join(d.refused) if d.refused else ""
        )
    elif d.missing:
        status = gateway_pb2.INGEST_STATUS_PARTIAL
        reason = "; ".join(["missing: " + ", ".join(d.missing), *d.refused, *d.notes])
    else:
        status = gateway_pb2.INGEST_STATUS_ACCEPTED
        reason = "; ".join(d.notes)
    return gateway_pb2.IngestResult(
        id=d.document.id,
        index=d.index,
        status=status,
        reason=reason,
        missing=d.missing,
        chunks=chunks if d.stored_in else 0,
    )
