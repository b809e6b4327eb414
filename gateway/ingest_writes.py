"""Ingest's writes to the retrievers, through their outboxes: queue one ReplaceDocuments (or
RemoveDocuments) entry per batch per retriever, wait for the retrievers' acknowledgements
until the caller's deadline, and say per document and retriever what happened:

- INDEXED: the retriever acknowledged the write (ReplaceDocuments said stored, or
  RemoveDocuments ran);
- QUEUED: durably in the outbox and not acknowledged yet; applied in order when it can be;
- FAILED: the retriever refused the document, the write was dead-lettered, or the outbox
  could not take it (then the write was never queued).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.outbox.delivery import OutboxDelivery
from gateway.outbox.store import OutboxUnavailable, Outcome, Write
from gateway.resilience.deadline import Deadline
from harag.v1 import gateway_pb2, retriever_pb2

INDEXED = gateway_pb2.WRITE_STATUS_INDEXED
QUEUED = gateway_pb2.WRITE_STATUS_QUEUED
FAILED = gateway_pb2.WRITE_STATUS_FAILED


@dataclass
class Batch:
    """One queued write, sent to every retriever: its documents and each retriever's entry."""

    write: Write
    document_ids: list[str]
    entries: dict[str, str] = field(default_factory=dict)  # retriever -> entry id
    refused: dict[str, str] = field(default_factory=dict)  # retriever -> why not queued


async def queue_batch(
    delivery: OutboxDelivery, retrievers: list[str], write: Write, document_ids: list[str]
) -> Batch:
    """Appends the write to every retriever's outbox (an outbox that cannot take it is noted)."""
    batch = Batch(write, document_ids)

    async def one(retriever: str) -> None:
        try:
            (entry,) = await delivery.enqueue(retriever, [write])
            batch.entries[retriever] = entry
        except OutboxUnavailable as exc:
            batch.refused[retriever] = f"outbox unavailable: {exc}"

    await asyncio.gather(*(one(r) for r in retrievers))
    return batch


async def wait_for(
    delivery: OutboxDelivery, batches: list[Batch], retrievers: list[str], deadline: Deadline
) -> dict[str, dict[str, Outcome]]:
    """Per retriever, the outcomes of the batches' entries known by the deadline."""

    async def one(retriever: str) -> dict[str, Outcome]:
        ids = [b.entries[retriever] for b in batches if retriever in b.entries]
        return await delivery.wait(retriever, ids, deadline)

    found = await asyncio.gather(*(one(r) for r in retrievers))
    return dict(zip(retrievers, found, strict=True))


def document_writes(
    batch: Batch, retriever: str, outcomes: dict[str, Outcome], *, remove: bool
) -> dict[str, gateway_pb2.RetrieverWrite]:
    """Per document of the batch: its write to this retriever."""
    entry = batch.entries.get(retriever)
    if entry is None:
        reason = batch.refused.get(retriever, "not queued")
        return {
            i: gateway_pb2.RetrieverWrite(retriever=retriever, status=FAILED, reason=reason)
            for i in batch.document_ids
        }
    outcome = outcomes.get(entry)
    if outcome is None:
        return {
            i: gateway_pb2.RetrieverWrite(retriever=retriever, status=QUEUED)
            for i in batch.document_ids
        }
    if not outcome.applied:
        return {
            i: gateway_pb2.RetrieverWrite(
                retriever=retriever, status=FAILED, reason=f"dead-lettered: {outcome.reason}"
            )
            for i in batch.document_ids
        }
    if remove:
        return {
            i: gateway_pb2.RetrieverWrite(retriever=retriever, status=INDEXED)
            for i in batch.document_ids
        }
    reply = retriever_pb2.ReplaceDocumentsResponse.FromString(outcome.reply)
    results = {r.document_id: r for r in reply.results}
    writes = {}
    for i in batch.document_ids:
        result = results.get(i)
        if result is not None and result.stored:
            writes[i] = gateway_pb2.RetrieverWrite(
                retriever=retriever, status=INDEXED, reason=result.reason
            )
        else:
            reason = result.reason if result is not None else "not in the retriever's reply"
            writes[i] = gateway_pb2.RetrieverWrite(
                retriever=retriever, status=FAILED, reason=reason
            )
    return writes


def removed_ids(outcome: Outcome | None) -> set[str]:
    if outcome is None or not outcome.applied:
        return set()
    return set(retriever_pb2.RemoveDocumentsResponse.FromString(outcome.reply).removed)
