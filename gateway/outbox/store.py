"""What an outbox is: an ordered, durable queue of writes per retriever, delivered by one
lease holder at a time, acked with the retriever's reply once the retriever acknowledged.

Two implementations: `RedisOutbox` (a Redis Stream per retriever with a consumer group,
shared by every gateway replica) and `SqliteOutbox` (a WAL-mode SQLite database in the
gateway's state dir, for a single gateway). Payloads are protobuf bytes: a
ReplaceDocumentsRequest for REPLACE, a RemoveDocumentsRequest for REMOVE; results are the
retriever's reply, also as protobuf bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["replace", "remove"]
REPLACE: Kind = "replace"
REMOVE: Kind = "remove"
KINDS: tuple[Kind, ...] = (REPLACE, REMOVE)


class OutboxUnavailable(Exception):
    """The outbox cannot take or hand out writes now (e.g. Redis is down)."""


@dataclass(frozen=True)
class Write:
    """One write to append: the request for one retriever, and the ingest job it belongs to."""

    kind: Kind
    payload: bytes
    job: str = ""
    documents: int = 0  # documents in the payload (for job progress and backlog reports)


@dataclass(frozen=True)
class Entry:
    """A write handed out for delivery."""

    id: str
    kind: Kind
    payload: bytes
    job: str
    documents: int
    deliveries: int
    """How many times it has been handed out, this time included: above 1 means a gateway
    took it before and died (or lost its lease) without acking it."""


@dataclass(frozen=True)
class Outcome:
    """What became of a write: applied (with the retriever's reply) or dead-lettered."""

    applied: bool
    reply: bytes = b""
    reason: str = ""


@dataclass(frozen=True)
class Counts:
    backlog: int
    dead_letters: int


@dataclass
class RetrieverCounts:
    queued: int = 0
    indexed: int = 0
    failed: int = 0


@dataclass
class JobRecord:
    """An ingest job as stored: counters only (the documents themselves are not kept)."""

    job_id: str
    state: str  # "running", "indexing", "done"
    accepted: int
    embedded: int
    unchanged: int
    failed: int
    started: float  # wall-clock seconds
    alive: bool  # the gateway running it renewed its lease in time
    retrievers: dict[str, RetrieverCounts]
    failures: list[str]


MAX_JOB_FAILURES = 100
JOB_KEEP_S = 7 * 24 * 3600


class Outbox(Protocol):
    backend: str

    async def append(self, retriever: str, writes: list[Write]) -> list[str]:
        """Appends durably, in order; returns the entries' ids. Raises OutboxUnavailable."""
        ...

    async def lease(self, retriever: str, owner: str, ttl_s: float) -> bool:
        """Takes or renews the right to deliver this retriever's writes for `ttl_s`."""
        ...

    async def take(self, retriever: str, owner: str, count: int) -> list[Entry] | None:
        """The next writes in order (first those a dead holder left unacked); None while such
        writes exist but are not idle long enough to be claimed (so order is kept)."""
        ...

    async def ack(
        self, retriever: str, entry: Entry, reply: bytes, indexed: int, refused: int
    ) -> None:
        """Marks the entry applied with the retriever's reply and, in the same transaction,
        adds its documents to its job's indexed/failed counts for this retriever."""
        ...

    async def dead_letter(self, retriever: str, entry: Entry, reason: str) -> None:
        """Moves the entry to the dead letters; its job counts its documents failed."""
        ...

    async def create_job(self, job_id: str, accepted: int, lease_s: float) -> None: ...

    async def job_progress(
        self,
        job_id: str,
        *,
        embedded: int,
        unchanged: int,
        failed: int,
        failures: list[str],
        queued: dict[str, int],
        lease_s: float,
    ) -> None:
        """Adds to the job's counters and renews its lease."""
        ...

    async def job_state(self, job_id: str, state: str) -> None: ...

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def outcomes(self, retriever: str, ids: list[str]) -> dict[str, Outcome]:
        """Outcomes of these entries that are known (applied or dead-lettered)."""
        ...

    async def counts(self, retriever: str) -> Counts: ...

    async def close(self) -> None: ...
