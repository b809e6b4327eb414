"""GCRA (the generic cell rate algorithm): a rate limit kept as one number per client, the
theoretical arrival time (TAT) at which the client's allowance would be whole again.

A call costing `cost` moves the TAT `cost` emission intervals (1/rate) on from max(TAT,
now); it passes when that new TAT lies at most `burst` intervals ahead of now, and
otherwise learns exactly when it would pass. The same arithmetic runs atomically inside
Redis (`GCRA_LUA`, on Redis's own clock, so replicas with skewed clocks agree) and in
process (`LocalGcra`, the fallback while Redis is unavailable, and the only limiter
without Redis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.resilience.clock import SYSTEM_CLOCK, Clock

# Microseconds, integers: exact in Lua's doubles (epoch microseconds < 2**53).
GCRA_LUA = """
-- KEYS[1]: the client's TAT (epoch microseconds); ARGV: interval_us, capacity_us, cost.
-- Returns {1, 0} when the call passes (the TAT is moved on), {0, retry_after_us} if not.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local stored = redis.pcall('GET', KEYS[1])
-- A missing key, a wrong type (an error reply) or garbage reads as no TAT, and so does
-- a TAT further ahead than any limit allows: garbage is a miss, never an error.
local tat = nil
if type(stored) == 'string' then tat = tonumber(stored) end
if tat == nil or tat ~= tat or tat < now or tat > now + capacity then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - capacity
if allow_at > now then
  return {0, allow_at - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, 0}
"""

_EPSILON_S = 1e-9  # float sums of intervals: 0.1 * 5 must not come out above 0.5


@dataclass(frozen=True)
class Limit:
    """`per_second` sustained, `burst` at once (both > 0)."""

    per_second: float
    burst: int

    @property
    def interval_us(self) -> int:
        return max(1, round(1_000_000 / self.per_second))

    @property
    def capacity_us(self) -> int:
        return self.interval_us * self.burst

    def share(self, replicas: int) -> Limit:
        """One replica's share when each enforces the limit alone (burst at least 1)."""
        if replicas <= 1:
            return self
        return Limit(self.per_second / replicas, max(1, self.burst // replicas))

    def describe(self, unit: str, per: str = "s") -> str:
        rate = self.per_second * (60 if per == "min" else 1)
        return f"{rate:g} {unit}/{per}, burst {self.burst}"


class LocalGcra:
    """GCRA in process memory, on a monotonic clock. Not thread-safe (one event loop).

    Subjects whose TAT has passed hold no information (they are as if new), so the table
    is swept of them whenever it grows past `max_subjects`.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, max_subjects: int = 100_000) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._max_subjects = max_subjects

    def take(self, key: str, limit: Limit, cost: int = 1) -> float:
        """0.0 when the call passes (and is counted); else the seconds until it would pass
        (math.inf when `cost` exceeds the burst: it never will)."""
        if cost > limit.burst:
            return math.inf
        now = self._clock.monotonic()
        interval = limit.interval_us / 1_000_000
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + interval * cost
        allow_at = new_tat - interval * limit.burst
        if allow_at > now + _EPSILON_S:
            return allow_at - now
        self._tat[key] = new_tat
        if len(self._tat) > self._max_subjects:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return 0.0

    def __len__(self) -> int:
        return len(self._tat)
