"""Sending documents to the gateway in batches, and what came back, counted for the summary."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import harag
from harag.v1 import common_pb2, gateway_pb2

BATCH_DOCUMENTS = 64
# Under grpcio's 4 MiB default message size, with room for metadata and the protobuf framing.
BATCH_BYTES = 2 * 1024 * 1024
INGEST_TIMEOUT_S = 120.0


@dataclass
class IngestReport:
    """Outcomes counted over every batch."""

    stored: int = 0  # accepted, queued or partial
    partial: int = 0
    queued: int = 0  # durably queued for some retriever, indexed there once it can take it
    unchanged: int = 0
    failed: int = 0
    chunks: int = 0
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # one line per failed or partial doc
    partial_ids: list[str] = field(default_factory=list)  # stored without some model's vectors

    def add(self, reply: gateway_pb2.IngestResponse) -> None:
        for r in reply.results:
            if r.status == gateway_pb2.INGEST_STATUS_UNCHANGED:
                self.unchanged += 1
            elif r.status == gateway_pb2.INGEST_STATUS_FAILED:
                self._fail(r.id, r.reason or "failed")
            else:
                self.stored += 1
                self.chunks += r.chunks
                if r.status == gateway_pb2.INGEST_STATUS_QUEUED:
                    self.queued += 1
                if r.status == gateway_pb2.INGEST_STATUS_PARTIAL:
                    self.partial += 1
                    self.partial_ids.append(r.id)
                    missing = ", ".join(r.missing)
                    self.problems.append(
                        f"{r.id}: partial, missing {missing}"
                        + (f" ({r.reason})" if r.reason else "")
                    )

    def _fail(self, doc_id: str, reason: str) -> None:
        self.failed += 1
        self.failed_by_reason[_reason_key(reason)] += 1
        self.problems.append(f"{doc_id}: {reason}")

    def fail_batch(self, batch: list[common_pb2.Document], error: harag.HaragError) -> None:
        reason = f"{error.code.name}: {' '.join(error.message.split())}"
        for document in batch:
            self._fail(document.id, reason)


def _reason_key(reason: str) -> str:
    """A reason without its particulars in brackets, so alike failures count together."""
    return reason.split(" (", 1)[0]


def batches(
    documents: list[common_pb2.Document], batch_documents: int = BATCH_DOCUMENTS
) -> Iterator[list[common_pb2.Document]]:
    """At most `batch_documents` documents and about BATCH_BYTES per call (a larger document
    goes alone, and the gateway says whether it is too large)."""
    batch: list[common_pb2.Document] = []
    size = 0
    for document in documents:
        doc_size = document.ByteSize()
        if batch and (len(batch) >= batch_documents or size + doc_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(document)
        size += doc_size
    if batch:
        yield batch


async def ingest_documents(
    client: harag.AsyncClient,
    documents: list[common_pb2.Document],
    progress: bool = False,
    batch_documents: int | None = None,
) -> IngestReport:
    """Ingests every document; a batch the gateway refuses as a whole (too large, invalid)
    fails its documents and the rest go on. Unreachable gateway: the error is raised.
    `batch_documents`: documents per Ingest call (None: BATCH_DOCUMENTS)."""
    batch_documents = batch_documents or BATCH_DOCUMENTS
    bar = None
    if progress and len(documents) > BATCH_DOCUMENTS:
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=len(documents), unit="doc", file=sys.stderr)
    report = IngestReport()
    try:
        for batch in batches(documents, batch_documents):
            try:
                # Ingest is idempotent (an id replaces its document), so shedding is retried.
                reply = await client.ingest(
                    batch, timeout=INGEST_TIMEOUT_S, retry=harag.RetryPolicy()
                )
            except (harag.InvalidArgument, harag.ResourceExhausted) as error:
                report.fail_batch(batch, error)
            else:
                report.add(reply)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return report


JOB_POLL_S = 0.5
JOB_CALL_TIMEOUT_S = 30.0
JOB_STATES = {
    gateway_pb2.INGEST_JOB_STATE_RUNNING: "running",
    gateway_pb2.INGEST_JOB_STATE_INDEXING: "indexing",
    gateway_pb2.INGEST_JOB_STATE_DONE: "done",
    gateway_pb2.INGEST_JOB_STATE_INTERRUPTED: "interrupted",
}
FINAL_JOB_STATES = (gateway_pb2.INGEST_JOB_STATE_DONE, gateway_pb2.INGEST_JOB_STATE_INTERRUPTED)


def job_line(job: gateway_pb2.GetIngestJobResponse) -> str:
    """One line of progress: state, embedded of accepted, and each retriever's share."""
    shares = ", ".join(
        f"{r.retriever} {r.indexed}/{r.queued}" + (f" ({r.failed} failed)" if r.failed else "")
        for r in job.retrievers
    )
    return (
        f"job {job.job_id[:12]} {JOB_STATES.get(job.state, 'unknown')}: "
        f"{job.embedded + job.unchanged}/{job.accepted} embedded"
        + (f" ({job.unchanged} unchanged)" if job.unchanged else "")
        + (f", {job.failed} failed" if job.failed else "")
        + (f"; indexed {shares}" if shares else "")
        + f" [{job.elapsed_s:.1f}s]"
    )


async def ingest_job(
    client: harag.AsyncClient, documents: list[common_pb2.Document]
) -> gateway_pb2.GetIngestJobResponse:
    """Starts an ingest job with the documents and prints its progress until it ends."""
    started = await client.start_ingest_job(documents, timeout=INGEST_TIMEOUT_S)
    print(f"harag ingest: job {started.job_id} took {started.accepted} documents", flush=True)
    last = ""
    while True:
        job = await client.get_ingest_job(
            started.job_id, timeout=JOB_CALL_TIMEOUT_S, retry=harag.RetryPolicy()
        )
        line = job_line(job)
        if line.split(" [")[0] != last:
            print(line, flush=True)
            last = line.split(" [")[0]
        if job.state in FINAL_JOB_STATES:
            return job
        await asyncio.sleep(JOB_POLL_S)
