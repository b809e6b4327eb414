"""Document administration: delete documents from every retriever, list what is stored.

Deleting is not a fallback chain either: every retriever must drop the document's chunks
(through its outbox, so a retriever that is down applies the delete when it is back), and
cached answers that cited it are evicted at once. Listing asks the retrievers in chain order
and the first that answers serves it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from gateway.config import IngestConfig
from gateway.ingest_writes import INDEXED, document_writes, queue_batch, removed_ids, wait_for
from gateway.outbox.delivery import OutboxDelivery
from gateway.outbox.store import REMOVE, Write
from gateway.resilience.deadline import Deadline
from gateway.upstreams import Upstreams
from harag.v1 import gateway_pb2, retriever_pb2

log = logging.getLogger("harag.documents")


async def delete_documents(
    upstreams: Upstreams,
    ids: list[str],
    delivery: OutboxDelivery,
    deadline: Deadline,
    evict: Callable[[list[str]], int] | None = None,
) -> gateway_pb2.DeleteDocumentsResponse:
    """Queues the removal of every chunk of these documents in every retriever's outbox (the
    same durable, ordered path as ingest's writes: a delete queued after an upsert wins),
    waits for the retrievers until the deadline, and evicts answers citing them."""
    retrievers = [u.name for u in upstreams.chains["retriever"]]
    write = Write(
        REMOVE,
        retriever_pb2.RemoveDocumentsRequest(document_ids=ids).SerializeToString(),
        "",
        len(ids),
    )
    batch = await queue_batch(delivery, retrievers, write, ids)
    outcomes = await wait_for(delivery, [batch], retrievers, deadline)
    evicted = evict(ids) if evict is not None else 0
    writes = {r: document_writes(batch, r, outcomes[r], remove=True) for r in retrievers}
    removed = {r: removed_ids(outcomes[r].get(batch.entries.get(r, ""))) for r in retrievers}
    results = []
    for i in ids:
        mine = [writes[r][i] for r in retrievers]
        results.append(
            gateway_pb2.DeleteResult(
                id=i,
                found=any(i in removed[r] for r in retrievers),
                missing=[w.retriever for w in mine if w.status != INDEXED],
                writes=mine,
            )
        )
    log.info(
        "documents deleted",
        extra={
            "requested": len(ids),
            "found": sum(r.found for r in results),
            "queued_for": sorted({m for r in results for m in r.missing}),
            "evicted_answers": evicted,
        },
    )
    return gateway_pb2.DeleteDocumentsResponse(results=results, evicted_answers=evicted)


class ListingError(Exception):
    """No retriever could list the documents, or the caller's request was refused."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def list_documents(
    upstreams: Upstreams, cfg: IngestConfig, page_size: int, page_token: str
) -> gateway_pb2.ListDocumentsResponse:
    """The first retriever in the chain that answers lists the stored documents."""
    request = retriever_pb2.ListStoredDocumentsRequest(page_size=page_size, page_token=page_token)
    failures = []
    for upstream in upstreams.chains["retriever"]:
        try:
            reply: retriever_pb2.ListStoredDocumentsResponse = (
                await upstream.stub.ListStoredDocuments(request, timeout=cfg.timeout_s)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ListingError(exc.code(), exc.details() or "invalid request") from exc
            failures.append(f"{upstream.name}: {exc.code().name}")
            continue
        return gateway_pb2.ListDocumentsResponse(
            documents=reply.documents,
            next_page_token=reply.next_page_token,
            served_by=upstream.name,
        )
    raise ListingError(
        grpc.StatusCode.UNAVAILABLE,
        "no retriever could list documents (" + "; ".join(failures) + ")",
    )
