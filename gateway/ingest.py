"""Ingest: embed every document with every embedder, store it in every retriever.

Ingestion is not a fallback chain: every configured embedder contributes its own vector
space (so a query embedded by the fallback model finds fallback-model vectors), and every
retriever gets every document (so the lexical fallback can answer when the dense primary
cannot). Bad documents fail alone; a missing embedder or retriever makes the documents
PARTIAL, naming what is missing. The response is a batch report.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from gateway.config import IngestConfig
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


@dataclass
class _Doc:
    index: int
    document: common_pb2.Document
    reason: str = ""  # validation failure
    embeddings: dict[str, list[float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    stored_in: list[str] = field(default_factory=list)


def document_id(text: str) -> str:
    return "doc-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _validate(docs: list[common_pb2.Document], cfg: IngestConfig) -> list[_Doc]:
    seen: set[str] = set()
    checked = []
    for index, raw in enumerate(docs):
        doc = common_pb2.Document()
        doc.CopyFrom(raw)
        if not doc.id:
            doc.id = document_id(doc.text)
        item = _Doc(index, doc)
        if not doc.text.strip():
            item.reason = "text is empty"
        elif len(doc.text) > cfg.max_document_chars:
            item.reason = f"text is {len(doc.text)} characters; at most {cfg.max_document_chars}"
        elif len(doc.id) > MAX_ID_CHARS:
            item.reason = f"id is longer than {MAX_ID_CHARS} characters"
        elif doc.id in seen:
            item.reason = f"duplicate id {doc.id!r} in this request"
        seen.add(doc.id)
        checked.append(item)
    return checked


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


async def _embed_with(
    upstream: Upstream, batch: list[_Doc], cfg: IngestConfig, retrying: Retrying
) -> str | None:
    """Adds this embedder's vectors to each document; returns its model id, None on failure."""
    request = embedder_pb2.EmbedRequest(texts=[d.document.text for d in batch])
    try:
        reply: embedder_pb2.EmbedResponse = await retrying.call(
            lambda: upstream.stub.Embed(request, timeout=cfg.timeout_s)
        )
    except grpc.aio.AioRpcError as exc:
        log.warning(
            "ingest embed failed", extra={"upstream": upstream.name, "code": exc.code().name}
        )
        for d in batch:
            d.missing.append(upstream.name)
        return None
    for d, vector in zip(batch, reply.embeddings, strict=True):
        d.embeddings[reply.model] = list(vector.values)
    return reply.model


async def _store_in(
    upstream: Upstream, batch: list[_Doc], cfg: IngestConfig, retrying: Retrying
) -> None:
    request = retriever_pb2.UpsertRequest(
        documents=[
            retriever_pb2.IndexedDocument(
                document=d.document,
                embeddings={m: common_pb2.Embedding(values=v) for m, v in d.embeddings.items()},
            )
            for d in batch
        ]
    )
    try:
        await retrying.call(lambda: upstream.stub.Upsert(request, timeout=cfg.timeout_s))
    except grpc.aio.AioRpcError as exc:
        log.warning(
            "ingest upsert failed",
            extra={"upstream": upstream.name, "code": exc.code().name, "error": exc.details()},
        )
        for d in batch:
            d.missing.append(upstream.name)
        return
    for d in batch:
        d.stored_in.append(upstream.name)


async def ingest(
    upstreams: Upstreams,
    cfg: IngestConfig,
    documents: list[common_pb2.Document],
    retrying: Retrying | None = None,
) -> gateway_pb2.IngestResponse:
    retrying = retrying or Retrying()
    started = time.perf_counter()
    docs = _validate(documents, cfg)
    valid = [d for d in docs if not d.reason]
    models: set[str] = set()
    size = cfg.batch_size
    for start in range(0, len(valid), size):
        batch = valid[start : start + size]
        found = await asyncio.gather(
            *(_embed_with(u, batch, cfg, retrying) for u in upstreams.chains["embedder"])
        )
        models.update(m for m in found if m)
        await asyncio.gather(
            *(_store_in(u, batch, cfg, retrying) for u in upstreams.chains["retriever"])
        )

    results = [_result(d) for d in docs]
    response = gateway_pb2.IngestResponse(
        results=results,
        succeeded=sum(r.status != gateway_pb2.INGEST_STATUS_FAILED for r in results),
        failed=sum(r.status == gateway_pb2.INGEST_STATUS_FAILED for r in results),
        elapsed_ms=(time.perf_counter() - started) * 1000,
        models=sorted(models),
    )
    log.info(
        "ingest finished",
        extra={
            "succeeded": response.succeeded,
            "failed": response.failed,
            "elapsed_ms": round(response.elapsed_ms, 1),
            "models": sorted(models),
        },
    )
    return response


def _result(d: _Doc) -> gateway_pb2.IngestResult:
    if d.reason:
        status, reason = gateway_pb2.INGEST_STATUS_FAILED, d.reason
    elif not d.stored_in:
        status, reason = gateway_pb2.INGEST_STATUS_FAILED, "no retriever stored the document"
    elif d.missing:
        status, reason = gateway_pb2.INGEST_STATUS_PARTIAL, "missing: " + ", ".join(d.missing)
    else:
        status, reason = gateway_pb2.INGEST_STATUS_ACCEPTED, ""
    return gateway_pb2.IngestResult(
        id=d.document.id, index=d.index, status=status, reason=reason, missing=d.missing
    )
