"""Document administration: delete documents from every retriever, list what is stored.

Deleting is not a fallback chain either: every retriever must drop the document's chunks, and
cached answers that cited it are evicted at once. Listing asks the retrievers in chain order
and the first that answers serves it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from gateway.config import IngestConfig
from gateway.ingest import Retrying
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import gateway_pb2, retriever_pb2

log = logging.getLogger("harag.documents")


async def _remove_from(
    upstream: Upstream, ids: list[str], cfg: IngestConfig, retrying: Retrying
) -> set[str] | None:
    """The ids this retriever removed; None when it could not be reached."""
    request = retriever_pb2.RemoveDocumentsRequest(document_ids=ids)
    reply: retriever_pb2.RemoveDocumentsResponse | None = await retrying.call_or_none(
        lambda: upstream.stub.RemoveDocuments(request, timeout=cfg.timeout_s),
        "delete failed",
        upstream.name,
    )
    return set(reply.removed) if reply is not None else None


async def delete_documents(
    upstreams: Upstreams,
    cfg: IngestConfig,
    ids: list[str],
    evict: Callable[[list[str]], int] | None = None,
    retrying: Retrying | None = None,
) -> gateway_pb2.DeleteDocumentsResponse:
    """Removes every chunk of these documents from every retriever; evicts answers citing them."""
    retrying = retrying or Retrying()
    retrievers = upstreams.chains["retriever"]
    removed = await asyncio.gather(*(_remove_from(u, ids, cfg, retrying) for u in retrievers))
    evicted = evict(ids) if evict is not None else 0
    unreachable = [u.name for u, r in zip(retrievers, removed, strict=True) if r is None]
    results = [
        gateway_pb2.DeleteResult(
            id=i, found=any(i in r for r in removed if r is not None), missing=unreachable
        )
        for i in ids
    ]
    log.info(
        "documents deleted",
        extra={
            "requested": len(ids),
            "found": sum(r.found for r in results),
            "unreachable": unreachable,
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
