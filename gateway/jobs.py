"""Asynchronous ingest jobs for large corpora: StartIngestJob takes the documents, answers
with a job id at once, and the job chunks, embeds and queues them batch by batch in the
background; GetIngestJob reports its progress from the job's record in the outbox's store.

What survives a gateway restart: the job's record (counters, first failures) and every write
it queued, which another gateway (or this one restarted) delivers and counts as indexed.
The documents not yet queued are not kept: such a job reads INTERRUPTED once its lease runs
out, and resubmitting the same documents skips those already stored (UNCHANGED).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid

from gateway.config import ChunkingConfig, IngestConfig
from gateway.ingest import prepare_and_queue
from gateway.outbox.config import OutboxConfig
from gateway.outbox.delivery import OutboxDelivery
from gateway.outbox.store import Outbox, OutboxUnavailable
from gateway.resilience.deadline import Deadline
from gateway.upstreams import Upstreams
from harag.v1 import common_pb2, gateway_pb2
from servicekit.background import BackgroundTasks

log = logging.getLogger("harag.jobs")

# Documents prepared (hash lookup, chunking, embedding, queueing) per round of a job.
ROUND_DOCUMENTS = 256
MIN_JOB_LEASE_S = 30.0
STATES = {
    "running": gateway_pb2.INGEST_JOB_STATE_RUNNING,
    "indexing": gateway_pb2.INGEST_JOB_STATE_INDEXING,
}


class IngestJobs:
    def __init__(
        self,
        outbox: Outbox,
        delivery: OutboxDelivery,
        upstreams: Upstreams,
        ingest: IngestConfig,
        chunking: ChunkingConfig,
        cfg: OutboxConfig,
    ) -> None:
        self.outbox = outbox
        self.delivery = delivery
        self.upstreams = upstreams
        self.ingest = ingest
        self.chunking = chunking
        self.cfg = cfg
        self.lease_s = max(MIN_JOB_LEASE_S, cfg.lease_s * 6)
        self._tasks = BackgroundTasks("ingest jobs")

    async def start(self, documents: list[common_pb2.Document]) -> str:
        """Records the job and starts it; its id. Raises OutboxUnavailable."""
        job_id = uuid.uuid4().hex
        await self.outbox.create_job(job_id, len(documents), self.lease_s)
        self._tasks.start(job_id, functools.partial(self._run, job_id, documents))
        log.info("ingest job started", extra={"job": job_id, "documents": len(documents)})
        return job_id

    async def stop(self) -> None:
        await self._tasks.stop()

    async def _run(self, job_id: str, documents: list[common_pb2.Document]) -> None:
        for start in range(0, len(documents), ROUND_DOCUMENTS):
            part = documents[start : start + ROUND_DOCUMENTS]
            prepared = await prepare_and_queue(
                self.upstreams,
                self.ingest,
                part,
                self.delivery,
                Deadline.after(self.cfg.ingest_deadline_s),
                chunking=self.chunking,
                job=job_id,
            )
            queued = dict.fromkeys(prepared.retrievers, 0)
            failures = []
            for batch in prepared.batches:
                for retriever in batch.entries:
                    queued[retriever] += len(batch.document_ids)
                for retriever, why in batch.refused.items():
                    failures.append(f"{len(batch.document_ids)} documents to {retriever}: {why}")
            failed = [d for d in prepared.docs if d.reason]
            failures += [f"{d.document.id}: {d.reason}" for d in failed]
            await self._record(
                job_id,
                embedded=sum(d.batch is not None for d in prepared.docs),
                unchanged=sum(d.unchanged for d in prepared.docs),
                failed=len(failed),
                failures=failures,
                queued=queued,
            )
        await self.outbox.job_state(job_id, "indexing")
        log.info("ingest job queued every document", extra={"job": job_id})

    async def _record(self, job_id: str, **progress: object) -> None:
        """Adds a round's progress, waiting out an outbox that is briefly unavailable."""
        for _ in range(100):
            try:
                await self.outbox.job_progress(job_id, lease_s=self.lease_s, **progress)  # type: ignore[arg-type]
                return
            except OutboxUnavailable:
                await asyncio.sleep(self.cfg.max_backoff_s)
        raise OutboxUnavailable("could not record the job's progress")

    async def get(self, job_id: str) -> gateway_pb2.GetIngestJobResponse | None:
        """The job's progress; None when no such job is known. Raises OutboxUnavailable."""
        record = await self.outbox.get_job(job_id)
        if record is None:
            return None
        retrievers = [
            gateway_pb2.RetrieverProgress(
                retriever=name, queued=c.queued, indexed=c.indexed, failed=c.failed
            )
            for name, c in record.retrievers.items()
        ]
        if record.state == "running":
            state = (
                gateway_pb2.INGEST_JOB_STATE_RUNNING
                if record.alive
                else gateway_pb2.INGEST_JOB_STATE_INTERRUPTED
            )
        elif all(r.indexed + r.failed >= r.queued for r in retrievers):
            state = gateway_pb2.INGEST_JOB_STATE_DONE
        else:
            state = STATES[record.state]
        return gateway_pb2.GetIngestJobResponse(
            job_id=job_id,
            state=state,
            accepted=record.accepted,
            embedded=record.embedded,
            unchanged=record.unchanged,
            failed=record.failed,
            retrievers=retrievers,
            failures=record.failures,
            elapsed_s=max(0.0, time.time() - record.started),
        )
