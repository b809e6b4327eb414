"""Delivering each retriever's outbox: one loop per retriever, in order, acked only after the
retriever acknowledged the write.

A retriever that is down, hung or behind an open breaker makes its loop wait (backing off up
to outbox_max_backoff_s), not skip: later writes to the same documents must not overtake it
(a delete queued after an upsert must win). Such waits never count against a write. What does
count is a refusal (any error other than the transient ones below) and a delivery a gateway
never acked (it died); past outbox_max_deliveries the write goes to the dead letters.
Callers waiting for their writes (`wait`) hear of each ack at once in this process and poll
the outbox for acks made by another replica.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from gateway.config import IngestConfig
from gateway.outbox.config import OutboxConfig
from gateway.outbox.store import REMOVE, Entry, Outbox, OutboxUnavailable, Outcome, Write
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.deadline import Deadline
from gateway.upstreams import Upstream
from harag.v1 import retriever_pb2
from servicekit.background import BackgroundTasks

log = logging.getLogger("harag.outbox")

# The retriever cannot take writes now: wait, and do not hold it against the write.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
TAKE = 16  # entries handed out per round
IDLE_POLL_S = 0.2  # how often an idle loop looks for writes appended by another replica
FIRST_BACKOFF_S = 0.05


class LeaseLost(Exception):
    """Another gateway holds this retriever's lease now: stop delivering what we took."""


@dataclass
class OutboxState:
    backend: str
    backlog: int = 0
    dead_letters: int = 0
    last_error: str = ""


def documents_in(entry: Entry) -> list[str]:
    """The document ids an entry writes (empty when its payload cannot be read)."""
    try:
        if entry.kind == REMOVE:
            return list(retriever_pb2.RemoveDocumentsRequest.FromString(entry.payload).document_ids)
        request = retriever_pb2.ReplaceDocumentsRequest.FromString(entry.payload)
    except DecodeError:
        return []
    return [d.document_id for d in request.documents]


class OutboxDelivery:
    def __init__(
        self,
        outbox: Outbox,
        retrievers: list[Upstream],
        cfg: OutboxConfig,
        ingest: IngestConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_applied: Callable[[list[str]], object] | None = None,
    ) -> None:
        self.outbox = outbox
        self.retrievers = {u.name: u for u in retrievers}
        self.cfg = cfg
        self.ingest = ingest
        self.clock = clock
        self.on_applied = on_applied
        self.owner = f"gateway-{uuid.uuid4().hex[:12]}"
        self.state = {name: OutboxState(outbox.backend) for name in self.retrievers}
        self._wake = {name: asyncio.Event() for name in self.retrievers}
        self._settled = {name: asyncio.Event() for name in self.retrievers}
        self._tasks = BackgroundTasks("outbox delivery")
        self._renewed = dict.fromkeys(self.retrievers, float("-inf"))

    def start(self) -> None:
        for name in self.retrievers:
            self._tasks.start(f"outbox {name}", functools.partial(self._run, name))

    async def stop(self) -> None:
        await self._tasks.stop()

    async def enqueue(self, retriever: str, writes: list[Write]) -> list[str]:
        """Appends the writes to the retriever's outbox durably; their entry ids.
        Raises OutboxUnavailable."""
        ids = await self.outbox.append(retriever, writes)
        self._wake[retriever].set()  # look now rather than at the next poll
        return ids

    async def wait(self, retriever: str, ids: list[str], deadline: Deadline) -> dict[str, Outcome]:
        """The outcomes of these entries known by the deadline (the rest are still queued).
        A retriever known to be unable to take writes is not waited for."""
        known: dict[str, Outcome] = {}
        while True:
            missing = [i for i in ids if i not in known]
            if not missing:
                return known
            settled = self._settled[retriever]
            settled.clear()
            try:
                known |= await self.outbox.outcomes(retriever, missing)
            except OutboxUnavailable:
                pass
            if len(known) == len(ids) or deadline.expired:
                return known
            if self._not_ready(self.retrievers[retriever]) is not None:
                return known  # down or behind an open breaker: the rest stays QUEUED
            try:
                async with asyncio.timeout(min(IDLE_POLL_S, deadline.remaining())):
                    await settled.wait()
            except TimeoutError:
                pass

    async def _sleep(self, retriever: str, seconds: float) -> None:
        wake = self._wake[retriever]
        try:
            async with asyncio.timeout(seconds):
                await wake.wait()
        except TimeoutError:
            pass
        wake.clear()

    async def _run(self, retriever: str) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                await self._round(retriever)
                backoff = FIRST_BACKOFF_S
            except (OutboxUnavailable, LeaseLost) as exc:
                self.state[retriever].last_error = f"outbox: {exc}"
                await self.clock.sleep(backoff)
                backoff = min(backoff * 2, self.cfg.max_backoff_s)
            except Exception as exc:  # a bug or a disk error must not end delivery for good
                log.exception("outbox delivery round failed", extra={"upstream": retriever})
                self.state[retriever].last_error = f"outbox: {exc}"
                await self.clock.sleep(self.cfg.max_backoff_s)

    async def _refresh_counts(self, retriever: str) -> None:
        counts = await self.outbox.counts(retriever)
        state = self.state[retriever]
        state.backlog, state.dead_letters = counts.backlog, counts.dead_letters

    async def _renew(self, retriever: str, force: bool = False) -> bool:
        now = self.clock.monotonic()
        if not force and now - self._renewed[retriever] < self.cfg.lease_s / 3:
            return True
        held = await self.outbox.lease(retriever, self.owner, self.cfg.lease_s)
        self._renewed[retriever] = now if held else float("-inf")
        return held

    async def _round(self, retriever: str) -> None:
        await self._refresh_counts(retriever)
        if not await self._renew(retriever, force=True):
            await self._sleep(retriever, self.cfg.lease_s / 2)  # another replica delivers
            return
        entries = await self.outbox.take(retriever, self.owner, TAKE)
        if entries is None:  # a dead holder's writes: claimable once idle for a lease
            await self._sleep(retriever, min(IDLE_POLL_S, self.cfg.lease_s / 4))
            return
        if not entries:
            await self._sleep(retriever, IDLE_POLL_S)
            return
        for entry in entries:
            await self._deliver(retriever, entry)

    async def _deliver(self, retriever: str, entry: Entry) -> None:
        upstream = self.retrievers[retriever]
        state = self.state[retriever]
        if entry.deliveries > self.cfg.max_deliveries:
            await self._dead(
                retriever, entry, f"handed out {entry.deliveries - 1} times, never acked"
            )
            return
        refusals = 0
        backoff = FIRST_BACKOFF_S
        while True:
            if not await self._renew(retriever):
                raise LeaseLost(retriever)
            problem = self._not_ready(upstream)
            if problem is None:
                try:
                    reply, indexed, refused = await self._apply(upstream, entry)
                except DecodeError as exc:
                    await self._dead(retriever, entry, f"payload cannot be read: {exc}")
                    return
                except grpc.aio.AioRpcError as exc:
                    problem = f"{exc.code().name}: {exc.details() or ''}".strip()
                    if exc.code() not in TRANSIENT:
                        refusals += 1
                        if entry.deliveries + refusals > self.cfg.max_deliveries:
                            await self._dead(retriever, entry, f"refused: {problem}")
                            return
                else:
                    await self._ack(retriever, entry, reply, indexed, refused)
                    state.last_error = ""
                    return
            state.last_error = problem
            await self.clock.sleep(backoff)
            backoff = min(backoff * 2, self.cfg.max_backoff_s)

    def _not_ready(self, upstream: Upstream) -> str | None:
        if upstream.skip_reason() is not None:
            return f"{upstream.name} reports {upstream.skip_reason()}"
        breaker = upstream.guard.breaker
        if breaker is not None and breaker.state.name in ("OPEN", "FORCED_OPEN"):
            return f"{upstream.name}'s circuit breaker is {breaker.state.name}"
        return None

    async def _apply(self, upstream: Upstream, entry: Entry) -> tuple[bytes, int, int]:
        """Sends the write; (the reply's bytes, documents indexed, documents refused)."""
        breaker = upstream.guard.breaker
        permit = breaker.try_acquire() if breaker is not None else None
        started = self.clock.monotonic()
        try:
            if entry.kind == REMOVE:
                request = retriever_pb2.RemoveDocumentsRequest.FromString(entry.payload)
                removed: retriever_pb2.RemoveDocumentsResponse = (
                    await upstream.stub.RemoveDocuments(request, timeout=self.ingest.timeout_s)
                )
                reply, indexed, refused = removed.SerializeToString(), len(request.document_ids), 0
            else:
                replace = retriever_pb2.ReplaceDocumentsRequest.FromString(entry.payload)
                replaced: retriever_pb2.ReplaceDocumentsResponse = (
                    await upstream.stub.ReplaceDocuments(replace, timeout=self.ingest.timeout_s)
                )
                stored = sum(r.stored for r in replaced.results)
                reply, indexed = replaced.SerializeToString(), stored
                refused = len(replace.documents) - stored
        except grpc.aio.AioRpcError as exc:
            if permit is not None:
                permit.on_result(exc.code(), self.clock.monotonic() - started)
            raise
        except BaseException:
            if permit is not None:
                permit.release_unused()
            raise
        if permit is not None:
            # A success's duration is a write's, not a query's: it says nothing of how fast
            # the retriever searches, so it is not offered as a slow call.
            permit.on_result(None, 0.0)
        return reply, indexed, refused

    async def _ack(
        self, retriever: str, entry: Entry, reply: bytes, indexed: int, refused: int
    ) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                await self.outbox.ack(retriever, entry, reply, indexed, refused)
                break
            except OutboxUnavailable:
                # Applied but not acked: keep trying; if this gateway dies first, the next
                # holder delivers it again, which the retriever applies idempotently.
                await self.clock.sleep(backoff)
                backoff = min(backoff * 2, self.cfg.max_backoff_s)
        self._settled[retriever].set()
        if self.on_applied is not None:
            self.on_applied(documents_in(entry))

    async def _dead(self, retriever: str, entry: Entry, reason: str) -> None:
        log.error(
            "outbox write dead-lettered",
            extra={"upstream": retriever, "entry": entry.id, "kind": entry.kind, "reason": reason},
        )
        await self.outbox.dead_letter(retriever, entry, reason)
        self._settled[retriever].set()
