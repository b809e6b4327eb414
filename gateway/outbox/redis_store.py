"""The shared outbox: a Redis Stream per retriever with one consumer group.

Only the gateway holding a retriever's lease (a key with a TTL, renewed while it delivers)
reads its stream, so writes apply in stream order even with many replicas. The holder reads
with XREADGROUP, so every write it took stays in the group's pending list until it is
acked (XACK, then XDEL: the stream's length is the backlog). When a holder dies, its lease
expires, and the next holder first claims the pending writes (XAUTOCLAIM with the lease as
min idle time) and delivers them before anything newer. A write's outcome (the retriever's
reply) is kept under a key for an hour so that whichever replica waits for it can read it.
Every call goes through RedisLink: bounded by its timeout, behind its breaker.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.outbox.store import (
    JOB_KEEP_S,
    MAX_JOB_FAILURES,
    Counts,
    Entry,
    JobRecord,
    Kind,
    OutboxUnavailable,
    Outcome,
    RetrieverCounts,
    Write,
)
from gateway.shared.redis_link import RedisLink, RedisUnavailable
from gateway.shared.redis_script import LuaScript

T = TypeVar("T")
GROUP = "delivery"
KEEP_OUTCOMES_S = 3600
APPLIED_MARK, DEAD_MARK = b"A", b"D"

# Take the lease when it is free or already ours; renew it either way.
LEASE = LuaScript(
    """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
)


# Ack (or dead-letter) an entry once: the outcome key is set only if absent, and only then
# are the job's counters moved, so a write delivered twice is counted once.
SETTLE = LuaScript(
    """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  if ARGV[5] ~= '' then
    redis.call('HINCRBY', KEYS[3], ARGV[5], ARGV[6])
    redis.call('HINCRBY', KEYS[3], ARGV[7], ARGV[8])
  end
end
redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[2], ARGV[4])
return 1
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisOutbox:
    backend = "redis"

    def __init__(self, link: RedisLink, lease_s: float) -> None:
        self.link = link
        self.lease_ms = int(lease_s * 1000)
        self._groups: set[str] = set()

    def _stream(self, retriever: str) -> str:
        return self.link.key("outbox", retriever)

    def _dead(self, retriever: str) -> str:
        return self.link.key("outbox-dead", retriever)

    def _outcome(self, retriever: str, entry_id: str) -> str:
        return self.link.key("outbox-outcome", retriever, entry_id)

    async def _call(self, fn: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            return await self.link.call(fn)
        except RedisUnavailable as exc:
            raise OutboxUnavailable(str(exc)) from exc

    async def _ensure_group(self, retriever: str) -> None:
        stream = self._stream(retriever)
        if stream in self._groups:
            return

        async def create(client: Redis) -> None:
            try:
                await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._call(create)
        self._groups.add(stream)

    async def append(self, retriever: str, writes: list[Write]) -> list[str]:
        await self._ensure_group(retriever)
        stream = self._stream(retriever)

        async def add(client: Redis) -> list[Any]:
            pipe = client.pipeline(transaction=True)
            for w in writes:
                fields: dict[Any, Any] = {
                    "kind": w.kind,
                    "payload": w.payload,
                    "job": w.job,
                    "documents": w.documents,
                }
                pipe.xadd(stream, fields)
            return list(await pipe.execute())

        return [_text(i) for i in await self._call(add)]

    async def lease(self, retriever: str, owner: str, ttl_s: float) -> bool:
        key = self.link.key("outbox-lease", retriever)

        async def run(client: Redis) -> object:
            return await LEASE.run(client, [key], [owner, int(ttl_s * 1000)])

        return bool(await self._call(run))

    async def take(self, retriever: str, owner: str, count: int) -> list[Entry] | None:
        await self._ensure_group(retriever)
        stream = self._stream(retriever)

        async def pending(client: Redis) -> list[dict[str, Any]]:
            return cast(
                list[dict[str, Any]],
                await client.xpending_range(stream, GROUP, min="-", max="+", count=count),
            )

        try:
            waiting = await self._call(pending)
        except OutboxUnavailable:
            self._groups.discard(stream)  # NOGROUP after a Redis restart: create it again
            raise
        others = [p for p in waiting if _text(p["consumer"]) != owner]
        if others:
            if min(int(p["time_since_delivered"]) for p in others) < self.lease_ms:
                return None  # a holder may still be at work on them; keep order, wait

            async def claim(client: Redis) -> object:
                return await client.xautoclaim(
                    stream, GROUP, owner, min_idle_time=self.lease_ms, start_id="0-0", count=count
                )

            await self._call(claim)
            waiting = await self._call(pending)
        delivered = {_text(p["message_id"]): int(p["times_delivered"]) for p in waiting}

        async def read(client: Redis) -> list[Any]:
            # RESP2 replies: [[stream, [(id, fields), ...]]] (the stubs say RESP3's dict).
            own: Any = await client.xreadgroup(GROUP, owner, {stream: "0"}, count=count)
            if own and own[0][1]:
                return cast(list[Any], own[0][1])
            new: Any = await client.xreadgroup(GROUP, owner, {stream: ">"}, count=count)
            return cast(list[Any], new[0][1]) if new else []

        entries = []
        for raw_id, fields in await self._call(read):
            entry_id = _text(raw_id)
            if not fields:  # deleted while pending: nothing to deliver
                continue
            f = {_text(k): v for k, v in fields.items()}
            entries.append(
                Entry(
                    entry_id,
                    cast(Kind, _text(f["kind"])),
                    bytes(f["payload"]),
                    _text(f.get("job", b"")),
                    int(f.get("documents", 0)),
                    delivered.get(entry_id, 1),
                )
            )
        return entries

    async def _settle(
        self, retriever: str, entry: Entry, outcome: bytes, indexed: int, failed: int
    ) -> None:
        keys = [
            self._outcome(retriever, entry.id),
            self._stream(retriever),
            self._job(entry.job) if entry.job else self._job("-"),
        ]
        args: list[str | int | float | bytes] = [
            outcome,
            KEEP_OUTCOMES_S,
            GROUP,
            entry.id,
            f"indexed:{retriever}" if entry.job else "",
            indexed,
            f"rfailed:{retriever}",
            failed,
        ]

        async def run(client: Redis) -> object:
            return await SETTLE.run(client, keys, args)

        await self._call(run)

    async def ack(
        self, retriever: str, entry: Entry, reply: bytes, indexed: int, refused: int
    ) -> None:
        await self._settle(retriever, entry, APPLIED_MARK + reply, indexed, refused)

    async def dead_letter(self, retriever: str, entry: Entry, reason: str) -> None:
        async def keep(client: Redis) -> object:
            return await client.xadd(
                self._dead(retriever),
                {
                    "entry": entry.id,
                    "kind": entry.kind,
                    "payload": entry.payload,
                    "job": entry.job,
                    "reason": reason,
                },
            )

        await self._call(keep)
        await self._settle(retriever, entry, DEAD_MARK + reason.encode(), 0, entry.documents)

    async def outcomes(self, retriever: str, ids: list[str]) -> dict[str, Outcome]:
        if not ids:
            return {}
        keys = [self._outcome(retriever, i) for i in ids]

        async def read(client: Redis) -> list[Any]:
            return list(await client.mget(keys))

        found = {}
        for entry_id, value in zip(ids, await self._call(read), strict=True):
            if value is None or len(value) < 1:
                continue
            mark, body = bytes(value[:1]), bytes(value[1:])
            if mark == APPLIED_MARK:
                found[entry_id] = Outcome(True, reply=body)
            elif mark == DEAD_MARK:
                found[entry_id] = Outcome(False, reason=body.decode(errors="replace"))
            # anything else is garbage under our key: unknown, as if not yet applied
        return found

    async def counts(self, retriever: str) -> Counts:
        async def lengths(client: Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.xlen(self._stream(retriever))
            pipe.xlen(self._dead(retriever))
            return list(await pipe.execute())

        backlog, dead = await self._call(lengths)
        return Counts(int(backlog), int(dead))

    def _job(self, job_id: str) -> str:
        return self.link.key("ingest-job", job_id)

    async def create_job(self, job_id: str, accepted: int, lease_s: float) -> None:
        key = self._job(job_id)

        async def create(client: Redis) -> object:
            pipe = client.pipeline(transaction=True)
            pipe.hset(
                key,
                mapping={"state": "running", "accepted": accepted, "started": time.time()},
            )
            pipe.expire(key, JOB_KEEP_S)
            pipe.set(self.link.key("ingest-job-lease", job_id), "1", px=int(lease_s * 1000))
            return await pipe.execute()

        await self._call(create)

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
        key = self._job(job_id)
        failures_key = self.link.key("ingest-job-failures", job_id)

        async def add(client: Redis) -> object:
            pipe = client.pipeline(transaction=True)
            pipe.hincrby(key, "embedded", embedded)
            pipe.hincrby(key, "unchanged", unchanged)
            pipe.hincrby(key, "failed", failed)
            for retriever, n in queued.items():
                pipe.hincrby(key, f"queued:{retriever}", n)
            if failures:
                pipe.rpush(failures_key, *failures)
                pipe.ltrim(failures_key, 0, MAX_JOB_FAILURES - 1)
                pipe.expire(failures_key, JOB_KEEP_S)
            pipe.set(self.link.key("ingest-job-lease", job_id), "1", px=int(lease_s * 1000))
            return await pipe.execute()

        await self._call(add)

    async def job_state(self, job_id: str, state: str) -> None:
        key = self._job(job_id)

        async def set_state(client: Redis) -> object:
            return await client.hset(key, "state", state)

        await self._call(set_state)

    async def get_job(self, job_id: str) -> JobRecord | None:
        async def read(client: Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(self._job(job_id))
            pipe.lrange(self.link.key("ingest-job-failures", job_id), 0, -1)
            pipe.exists(self.link.key("ingest-job-lease", job_id))
            return list(await pipe.execute())

        raw, failures, alive = await self._call(read)
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if "state" not in fields:
            return None
        retrievers: dict[str, RetrieverCounts] = {}
        for name, value in fields.items():
            kind, _, retriever = name.partition(":")
            if not retriever:
                continue
            counts = retrievers.setdefault(retriever, RetrieverCounts())
            if kind == "queued":
                counts.queued = int(value)
            elif kind == "indexed":
                counts.indexed = int(value)
            elif kind == "rfailed":
                counts.failed = int(value)
        return JobRecord(
            job_id,
            fields["state"],
            int(fields.get("accepted", 0)),
            int(fields.get("embedded", 0)),
            int(fields.get("unchanged", 0)),
            int(fields.get("failed", 0)),
            float(fields.get("started", 0)),
            bool(alive),
            dict(sorted(retrievers.items())),
            [_text(f) for f in failures],
        )

    async def close(self) -> None:
        return None  # the RedisLink is the gateway's, closed with it
