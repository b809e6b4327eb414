"""Ingest: cut each document into chunks, embed every chunk with every embedder, and queue
the document's chunks for every retriever in its outbox (gateway/outbox).

Ingestion is not a fallback chain: every configured embedder contributes its own vector
space (so a query embedded by the fallback model finds fallback-model vectors), and every
retriever gets every document (so the lexical fallback can answer when the dense primary
cannot). Bad documents fail alone; a missing embedder makes the documents PARTIAL, naming
what is missing. The response says per document and retriever INDEXED, QUEUED or FAILED.

Ingest keeps the caller's deadline: every call's timeout is bounded by it, no call starts
after it, an open breaker is not called, and what the retrievers have not acknowledged when
it comes is reported QUEUED (it is applied, in order, once they can take it).

A document's content hash covers its text, metadata, the chunking settings and the
embedding models; when every retriever already holds a document with that hash it is
UNCHANGED and nothing is embedded. A changed document's chunks are replaced in one
ReplaceDocuments write per retriever, which the retrievers apply atomically per document
and idempotently (a write delivered twice stores the document once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from gateway.chunking import chunk_text, title_of
from gateway.config import ChunkingConfig, IngestConfig
from gateway.ingest_calls import Retrying
from gateway.ingest_writes import (
    FAILED,
    INDEXED,
    QUEUED,
    Batch,
    document_writes,
    queue_batch,
    wait_for,
)
from gateway.outbox.delivery import OutboxDelivery
from gateway.outbox.store import REPLACE, Write
from gateway.resilience.deadline import Deadline
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import common_pb2, embedder_pb2, gateway_pb2, retriever_pb2

log = logging.getLogger("harag.ingest")

__all__ = ["Retrying", "ingest", "prepare_and_queue"]

MAX_ID_CHARS = 256
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
    missing: list[str] = field(default_factory=list)  # embedders that did not embed it
    writes: dict[str, gateway_pb2.RetrieverWrite] = field(default_factory=dict)
    batch: Batch | None = None


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


@dataclass
class _Embedder:
    upstream: Upstream
    model: str
    max_batch_size: int
    max_text_chars: int


# A lookup (model info, stored hashes) gets at most this share of the time left, so a hung
# upstream leaves the rest of the deadline to embedding and queueing.
LOOKUP_SHARE = 0.25


def _lookup_cap(cfg: IngestConfig, deadline: Deadline) -> float:
    return max(0.05, min(cfg.timeout_s, deadline.remaining() * LOOKUP_SHARE))


async def _model_info(
    upstream: Upstream, cfg: IngestConfig, retrying: Retrying, deadline: Deadline
) -> _Embedder | None:
    info: embedder_pb2.GetModelInfoResponse | None = await retrying.call_or_none(
        lambda t: upstream.stub.GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=t),
        "ingest model info failed",
        upstream,
        deadline=deadline,
        cap_s=_lookup_cap(cfg, deadline),
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
    upstream: Upstream, ids: list[str], cfg: IngestConfig, retrying: Retrying, deadline: Deadline
) -> dict[str, str]:
    """The retriever's content hashes for these ids; empty when it cannot say in time."""
    if not ids:
        return {}
    request = retriever_pb2.GetDocumentHashesRequest(document_ids=ids)
    reply: retriever_pb2.GetDocumentHashesResponse | None = await retrying.call_or_none(
        lambda t: upstream.stub.GetDocumentHashes(request, timeout=t),
        "ingest hash lookup failed",
        upstream,
        deadline=deadline,
        cap_s=_lookup_cap(cfg, deadline),
    )
    return dict(reply.content_hashes) if reply is not None else {}


async def _embed_with(
    embedder: _Embedder,
    batch: list[_Doc],
    cfg: IngestConfig,
    retrying: Retrying,
    deadline: Deadline,
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
        reply: embedder_pb2.EmbedResponse | None = await retrying.call_or_none(
            lambda t, r=request: upstream.stub.Embed(r, timeout=t),  # type: ignore[misc]
            "ingest embed failed",
            upstream,
            deadline=deadline,
            cap_s=cfg.timeout_s,
        )
        if reply is None:
            failed.update(id(d) for d, _ in part)
            continue
        for (d, i), vector in zip(part, reply.embeddings, strict=True):
            d.embeddings[i][reply.model or embedder.model] = list(vector.values)
    for d in batch:
        if id(d) in failed:
            d.missing.append(upstream.name)
            for vectors in d.embeddings:
                vectors.pop(embedder.model, None)


def _replace_request(batch: list[_Doc]) -> retriever_pb2.ReplaceDocumentsRequest:
    return retriever_pb2.ReplaceDocumentsRequest(
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


@dataclass
class Prepared:
    """Documents checked, embedded and queued; what remains is to learn their outcomes."""

    docs: list[_Doc]
    batches: list[Batch]
    models: list[str]
    retrievers: list[str]


async def prepare_and_queue(
    upstreams: Upstreams,
    cfg: IngestConfig,
    documents: list[common_pb2.Document],
    delivery: OutboxDelivery,
    deadline: Deadline,
    *,
    retrying: Retrying | None = None,
    chunking: ChunkingConfig | None = None,
    job: str = "",
) -> Prepared:
    """Validates, skips unchanged documents, chunks, embeds and queues a write per batch in
    every retriever's outbox; nothing is queued once the deadline has passed."""
    retrying = retrying or Retrying()
    chunking = chunking or ChunkingConfig()
    docs = _validate(documents, cfg)
    valid = [d for d in docs if not d.reason]
    retrievers = upstreams.chains["retriever"]
    found = await asyncio.gather(
        *(_model_info(u, cfg, retrying, deadline) for u in upstreams.chains["embedder"])
    )
    embedders = [e for e in found if e is not None]
    unreachable = [
        u.name for u, e in zip(upstreams.chains["embedder"], found, strict=True) if e is None
    ]
    models = sorted({e.model for e in embedders})
    for d in valid:
        d.content_hash = content_hash(d.document, chunking, models)
    held = await asyncio.gather(
        *(
            _stored_hashes(u, [d.document.id for d in valid], cfg, retrying, deadline)
            for u in retrievers
        )
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
    names = [u.name for u in retrievers]
    queued: list[Batch] = []
    for batch in _batches(todo, cfg.batch_size):
        if deadline.expired:
            for d in batch:
                d.reason = "the caller's deadline passed before it was embedded"
            continue
        await asyncio.gather(*(_embed_with(e, batch, cfg, retrying, deadline) for e in embedders))
        for d in batch:
            # The stored hash names the models actually embedded, so a document that missed
            # one is not UNCHANGED next time: re-ingesting it heals the gap.
            present = [e.model for e in embedders if e.upstream.name not in d.missing]
            if len(present) != len(embedders):
                d.content_hash = content_hash(d.document, chunking, present)
        # A document no embedder could embed is still written: the lexical retrievers
        # index its text, and the dense ones say why they cannot.
        embedded = batch
        if deadline.expired:
            for d in embedded:
                d.reason = "the caller's deadline passed before it was queued"
            continue
        write = Write(REPLACE, _replace_request(embedded).SerializeToString(), job, len(embedded))
        queued_batch = await queue_batch(delivery, names, write, [d.document.id for d in embedded])
        for d in embedded:
            d.batch = queued_batch
        queued.append(queued_batch)
    return Prepared(docs, queued, models, names)


def settle(prepared: Prepared, outcomes: dict[str, dict[str, object]]) -> None:
    """Fills each document's writes from the outcomes known (the rest are QUEUED)."""
    by_batch = {
        id(b): {
            r: document_writes(b, r, outcomes.get(r, {}), remove=False)  # type: ignore[arg-type]
            for r in prepared.retrievers
        }
        for b in prepared.batches
    }
    for d in prepared.docs:
        if d.batch is not None:
            d.writes = {r: w[d.document.id] for r, w in by_batch[id(d.batch)].items()}


async def ingest(
    upstreams: Upstreams,
    cfg: IngestConfig,
    documents: list[common_pb2.Document],
    delivery: OutboxDelivery,
    deadline: Deadline,
    *,
    retrying: Retrying | None = None,
    chunking: ChunkingConfig | None = None,
    on_changed: Callable[[list[str]], object] | None = None,
) -> gateway_pb2.IngestResponse:
    """Ingests the documents and waits for the retrievers' acknowledgements until the
    deadline; `on_changed` hears the ids of every document (re)indexed somewhere."""
    started = time.perf_counter()
    prepared = await prepare_and_queue(
        upstreams, cfg, documents, delivery, deadline, retrying=retrying, chunking=chunking
    )
    outcomes = await wait_for(delivery, prepared.batches, prepared.retrievers, deadline)
    settle(prepared, outcomes)  # type: ignore[arg-type]
    docs = prepared.docs
    changed = [d.document.id for d in docs if any(w.status == INDEXED for w in d.writes.values())]
    if changed and on_changed is not None:
        on_changed(changed)
    results = [_result(d) for d in docs]
    status = gateway_pb2.IngestStatus
    response = gateway_pb2.IngestResponse(
        results=results,
        succeeded=sum(r.status == status.INGEST_STATUS_ACCEPTED for r in results),
        failed=sum(r.status == status.INGEST_STATUS_FAILED for r in results),
        queued=sum(r.status == status.INGEST_STATUS_QUEUED for r in results),
        partial=sum(r.status == status.INGEST_STATUS_PARTIAL for r in results),
        elapsed_ms=(time.perf_counter() - started) * 1000,
        models=prepared.models,
        unchanged=sum(d.unchanged for d in docs),
        chunks=sum(r.chunks for r in results),
    )
    log.info(
        "ingest finished",
        extra={
            "succeeded": response.succeeded,
            "queued": response.queued,
            "partial": response.partial,
            "failed": response.failed,
            "unchanged": response.unchanged,
            "chunks": response.chunks,
            "elapsed_ms": round(response.elapsed_ms, 1),
            "models": prepared.models,
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
    writes = list(d.writes.values())
    failed = [w for w in writes if w.status == FAILED]
    held = [w for w in writes if w.status in (INDEXED, QUEUED)]
    missing = [*d.missing, *(w.retriever for w in failed)]
    if d.unchanged:
        status, reason = gateway_pb2.INGEST_STATUS_UNCHANGED, ""
    elif d.reason:
        status, reason = gateway_pb2.INGEST_STATUS_FAILED, d.reason
    elif not held:
        status = gateway_pb2.INGEST_STATUS_FAILED
        reason = "no retriever indexed or queued the document" + (
            ": " + "; ".join(f"{w.retriever}: {w.reason}" for w in failed) if failed else ""
        )
    elif missing:
        status = gateway_pb2.INGEST_STATUS_PARTIAL
        reason = "; ".join(
            ["missing: " + ", ".join(missing)]
            + [f"{w.retriever}: {w.reason}" for w in writes if w.reason]
        )
    else:
        queued = any(w.status == QUEUED for w in writes)
        status = gateway_pb2.INGEST_STATUS_QUEUED if queued else gateway_pb2.INGEST_STATUS_ACCEPTED
        reason = "; ".join(f"{w.retriever}: {w.reason}" for w in writes if w.reason)
    return gateway_pb2.IngestResult(
        id=d.document.id,
        index=d.index,
        status=status,
        reason=reason,
        missing=missing,
        chunks=len(d.chunks) if held else 0,
        writes=writes,
    )
