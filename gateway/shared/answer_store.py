"""The answer cache's shared layer (L2) on Redis, and the lease that runs identical queries
arriving at different replicas once.

Keys (under the deployment's prefix; all in one Redis, not a cluster):
  answer:<h>         the answer as protobuf bytes (gateway/answer_codec.py), with a TTL of
                     the longer of the fresh and stale lives; how fresh it still is follows
                     from its PTTL, so replicas need no agreeing clocks
  answer:lease:<h>   the replica computing this answer now (SET NX PX)
  answer:doc:<id>    the answer keys citing a document, evicted with it
  answer:generation  counts evictions: an answer whose work began before one is not
                     written (it may cite what was just replaced); a replica that sees the
                     counter move without having heard of the eviction drops its L1

Every call goes through the Redis link: a failure is a miss (or a skipped write), never an
error, and costs at most the link's timeout. A value that is not an answer is a miss.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.answer_codec import decode_answer, encode_answer
from gateway.query import QueryResult
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.deadline import Deadline
from gateway.shared.events import SharedEvents
from gateway.shared.redis_link import RedisLink, RedisUnavailable
from gateway.shared.redis_script import Arg, LuaScript
from gateway.shared.shared_config import SharedStateConfig

EVICTED = "cache_evict"

# A string value or false: a key of another type (garbage) is treated as absent.
_STRING = """
local function str(key)
  if redis.call('TYPE', key).ok == 'string' then return redis.call('GET', key) end
  return false
end
"""

# KEYS: answer, lease, generation. ARGV: owner, lease ms (0: none), stale-only ms.
# -> {value or '', pttl, generation, lease: 0 none/hit, 1 ours, 2 another replica's}
LOOKUP = LuaScript(
    _STRING
    + """
local value = str(KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
local generation = str(KEYS[3]) or '0'
if value and ttl > tonumber(ARGV[3]) then return {value, ttl, generation, 0} end
local lease = 0
if tonumber(ARGV[2]) > 0 then
  if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then lease = 1 else lease = 2 end
end
return {value or '', ttl, generation, lease}
"""
)

# KEYS: answer, lease. -> {value or '', pttl, lease held by anyone (0/1)}
PEEK = LuaScript(
    _STRING
    + """
return {str(KEYS[1]) or '', redis.call('PTTL', KEYS[1]), redis.call('EXISTS', KEYS[2])}
"""
)

# KEYS: answer, generation, lease, doc sets... ARGV: value, ttl ms, generation, owner.
# Writes unless an eviction happened since the generation was read; releases our lease.
PUT = LuaScript(
    _STRING
    + """
local wrote = 0
if (str(KEYS[2]) or '0') == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  for i = 4, #KEYS do
    local kind = redis.call('TYPE', KEYS[i]).ok
    if kind ~= 'set' and kind ~= 'none' then redis.call('DEL', KEYS[i]) end
    redis.call('SADD', KEYS[i], KEYS[1])
    if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
      redis.call('PEXPIRE', KEYS[i], ARGV[2])
    end
  end
  wrote = 1
end
if str(KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return wrote
"""
)

# KEYS: lease. ARGV: owner.
RELEASE = LuaScript(
    _STRING + "if str(KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)

# KEYS: generation, doc sets... ARGV: channel, replica, document ids (as many as doc sets).
# Drops the answers citing the documents, counts the eviction, tells the other replicas.
EVICT = LuaScript(
    _STRING
    + """
local generation = tonumber(str(KEYS[1]) or '0')
if generation == nil then generation = 0 end
generation = generation + 1
redis.call('SET', KEYS[1], generation)
local dropped = 0
for i = 2, #KEYS do
  if redis.call('TYPE', KEYS[i]).ok == 'set' then
    for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
      dropped = dropped + redis.call('DEL', key)
    end
  end
  redis.call('DEL', KEYS[i])
end
local documents = {}
for i = 3, #ARGV do documents[#documents + 1] = ARGV[i] end
redis.call('PUBLISH', ARGV[1], cjson.encode({kind = 'cache_evict', replica = ARGV[2],
  generation = generation, documents = documents}))
return {generation, dropped}
"""
)


GENERATION = LuaScript(_STRING + "return str(KEYS[1]) or '0'")


@dataclass(frozen=True)
class Shared:
    """What the shared layer holds for a query: an answer with the fresh and stale life it
    has left (seconds), or none."""

    answer: QueryResult | None
    fresh_s: float
    stale_s: float


@dataclass
class Ticket:
    """A query's visit to the shared layer: what it found, the eviction count it read (its
    write is dropped if that moved) and whether it holds the lease on the answer."""

    hit: Shared | None = None
    generation: str | None = None  # None: Redis did not answer; nothing will be written
    leased: bool = False
    other_lease: bool = False


class AnswerStore:
    def __init__(
        self,
        link: RedisLink,
        events: SharedEvents,
        cfg: SharedStateConfig,
        ttl_s: float,
        stale_ttl_s: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.link = link
        self.events = events
        self.cfg = cfg
        self.clock = clock
        self.ttl_ms = int(ttl_s * 1000)
        self.stale_ms = int(stale_ttl_s * 1000)
        self.life_ms = max(self.ttl_ms, self.stale_ms)
        self.enabled = link.configured and cfg.cache_l2_enabled and self.life_ms > 0
        self.lease_ms = int(cfg.cache_lease_ms) if self.ttl_ms > 0 else 0
        self.too_large = 0  # answers not shared for their size

    def _hash(self, key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def _answer_key(self, key: str) -> str:
        return self.link.key("answer", self._hash(key))

    def _lease_key(self, key: str) -> str:
        return self.link.key("answer", "lease", self._hash(key))

    def _generation_key(self) -> str:
        return self.link.key("answer", "generation")

    def _doc_key(self, document: str) -> str:
        return self.link.key("answer", "doc", document)

    def _shared(self, value: object, ttl_ms: object) -> Shared | None:
        if not isinstance(value, bytes) or not value or not isinstance(ttl_ms, int):
            return None
        answer = decode_answer(value)
        if answer is None or ttl_ms <= 0:
            return None
        # The key lives as long as the longer life; each life ends that much earlier.
        fresh = (ttl_ms - (self.life_ms - self.ttl_ms)) / 1000
        stale = (ttl_ms - (self.life_ms - self.stale_ms)) / 1000
        return Shared(answer, fresh, stale)

    async def lookup(self, key: str) -> Ticket:
        """A fresh answer from L2, or the lease to compute it (or news that another replica
        holds it). Never raises: without Redis the ticket says "compute, write nothing"."""
        if not self.enabled:
            return Ticket()
        keys = [self._answer_key(key), self._lease_key(key), self._generation_key()]
        args: list[Arg] = [self.events.replica, self.lease_ms, self.life_ms - self.ttl_ms]
        try:
            reply = await self.link.call(lambda c: LOOKUP.run(c, keys, args))
        except RedisUnavailable:
            return Ticket()
        value, ttl_ms, generation, lease = _four(reply)
        shared = self._shared(value, ttl_ms)
        ticket = Ticket(generation=_text(generation), leased=lease == 1, other_lease=lease == 2)
        if shared is not None and shared.fresh_s > 0:
            ticket.hit = shared
        return ticket

    async def wait_for(self, key: str, deadline: Deadline) -> Shared | None:
        """Waits (a bounded slice of the deadline) for the answer another replica holds the
        lease on; None when it gave up the lease without an answer, or time is up."""
        limit_s = min(
            deadline.remaining() * self.cfg.cache_lease_wait_fraction, self.lease_ms / 1000
        )
        until = self.clock.monotonic() + limit_s
        keys = [self._answer_key(key), self._lease_key(key)]
        while self.clock.monotonic() < until:
            await self.clock.sleep(
                min(self.cfg.cache_lease_poll_ms / 1000, max(0.0, until - self.clock.monotonic()))
            )
            peeked = await self._peek(keys)
            if peeked is None:
                return None
            shared, leased = peeked
            if shared is not None and shared.fresh_s > 0:
                return shared
            if not leased:
                return None  # the lease is gone without an answer: compute it here
        return None

    async def get_stale(self, key: str) -> Shared | None:
        """The last good answer, however fresh (for when every generator failed)."""
        if not self.enabled:
            return None
        peeked = await self._peek([self._answer_key(key), self._lease_key(key)])
        shared = peeked[0] if peeked is not None else None
        return shared if shared is not None and shared.stale_s > 0 else None

    async def _peek(self, keys: list[str]) -> tuple[Shared | None, bool] | None:
        """The answer under `keys[0]` (None: none, or garbage) and whether the lease at
        `keys[1]` is held; None when Redis did not answer sensibly."""
        try:
            reply = await self.link.call(lambda c: PEEK.run(c, keys, []))
        except RedisUnavailable:
            return None
        if not isinstance(reply, list) or len(reply) != 3:
            return None
        return self._shared(reply[0], reply[1]), reply[2] != 0

    def put(self, key: str, result: QueryResult, documents: Iterable[str], ticket: Ticket) -> None:
        """Writes the answer in the background (the reply never waits for Redis) unless an
        eviction happened since the ticket was taken; releases the ticket's lease."""
        if ticket.generation is None:
            return
        value = encode_answer(result)
        if len(value) > self.cfg.cache_l2_max_value_bytes:
            self.too_large += 1
            self.release(key, ticket)
            return
        docs = sorted(documents)
        keys = [self._answer_key(key), self._generation_key(), self._lease_key(key)]
        keys += [self._doc_key(d) for d in docs]
        args: list[Arg] = [value, self.life_ms, ticket.generation, self.events.replica]

        async def write() -> None:
            await self.link.call(lambda c: PUT.run(c, keys, args))

        self.events.spawn("answer-put", write)

    def release(self, key: str, ticket: Ticket) -> None:
        """Gives up the lease without an answer (a degraded or failed run), so the replicas
        waiting on it compute their own at once."""
        if not ticket.leased:
            return
        keys, args = [self._lease_key(key)], [self.events.replica]

        async def release() -> None:
            await self.link.call(lambda c: RELEASE.run(c, keys, args))

        self.events.spawn("answer-release", release)

    async def evict_documents(self, documents: Iterable[str]) -> int | None:
        """Drops the shared answers citing these documents and tells every replica (their
        L1 copies go too); the new eviction count, or None without Redis."""
        if not self.enabled:
            return None
        docs = sorted(set(documents))
        if not docs:
            return None
        keys = [self._generation_key(), *(self._doc_key(d) for d in docs)]
        args = [self.events.channel, self.events.replica, *docs]
        try:
            reply = await self.link.call(lambda c: EVICT.run(c, keys, args))
        except RedisUnavailable:
            return None
        return int(reply[0]) if isinstance(reply, list) and reply else None

    async def generation(self) -> int | None:
        """The eviction count (None for garbage); raises RedisUnavailable."""
        keys = [self._generation_key()]
        raw = await self.link.call(lambda c: GENERATION.run(c, keys, []))
        try:
            return int(raw) if isinstance(raw, bytes) else None
        except ValueError:
            return None


def _four(reply: object) -> tuple[object, object, object, object]:
    if isinstance(reply, list) and len(reply) == 4:
        return reply[0], reply[1], reply[2], reply[3]
    return None, None, None, None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None


__all__ = ["EVICTED", "AnswerStore", "Shared", "Ticket"]
