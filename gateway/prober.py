"""Active breaker probes and the in-flight watch.

Probes: a breaker moves OPEN -> HALF_OPEN -> CLOSED only when calls ask it for permits. A
fallback sees traffic only while its primary is failing, so after both recover it would
stay open (and the system DEGRADED) until the next outage. The prober replays each
upstream's most recent request (only requests safe to repeat are remembered) through the
upstream's own guard whenever its breaker would admit a probe, so the result counts like
any other call. When an upstream's health check turns SERVING while its breaker is open (a
restart), the open wait is cut short and a full set of half-open probes goes at once, so
recovery is as prompt as detection.

Watch: one loop for all upstreams looks at the calls in flight and records a call still
waiting past its slow-call threshold as a slow call (Guard.watch), so a hung upstream is
known while its calls hang, not only when they time out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from gateway.resilience.breaker_types import CircuitState
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Attempts, CallFailed, Guard, Timing, guarded_call
from gateway.upstreams import HEALTH_SERVING, Upstream
from servicekit.background import BackgroundTasks

log = logging.getLogger("harag.prober")

PROBE_STATES = (CircuitState.OPEN, CircuitState.HALF_OPEN)
LOOP = "loop"
WATCH = "watch"


class BreakerProber:
    def __init__(
        self,
        upstreams: list[Upstream],
        interval_s: float,
        timeout_s: float,
        watch_interval_s: float | None = None,
    ) -> None:
        """`watch_interval_s` None: the breakers' own `watch_interval_s` (the shortest)."""
        self.upstreams = upstreams
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        if watch_interval_s is None:
            intervals = [
                u.guard.breaker.config.watch_interval_s
                for u in upstreams
                if u.guard.breaker is not None
            ]
            watch_interval_s = min(intervals, default=0.0)
        self.watch_interval_s = watch_interval_s
        # The loops, and one probe per upstream at most (named after the upstream).
        self._tasks = BackgroundTasks("breaker prober")
        for upstream in upstreams:
            upstream.on_health = functools.partial(self.health_changed, upstream)

    def start(self) -> None:
        if self.interval_s > 0:
            self._tasks.start(LOOP, self._loop)
        if self.watch_interval_s > 0 and any(u.guard.inflight for u in self.upstreams):
            self._tasks.start(WATCH, self._watch)

    async def stop(self) -> None:
        await self._tasks.stop()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.probe_due()

    async def _watch(self) -> None:
        interval = self.watch_interval_s
        due = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            self.watch(now, lag_s=max(0.0, now - due))
            due = now + interval

    def watch(self, now: float, lag_s: float = 0.0) -> None:
        for upstream in self.upstreams:
            upstream.guard.watch(now, lag_s)

    def probe_due(self) -> None:
        """Starts one probe per upstream whose breaker is open or half-open, if none runs."""
        for upstream in self.upstreams:
            guard = upstream.guard
            breaker = guard.breaker
            if breaker is None or guard.last_call is None or breaker.state not in PROBE_STATES:
                continue
            self._tasks.start(f"probe {upstream.name}", functools.partial(self._probe, guard))

    def health_changed(self, upstream: Upstream, old: str, new: str) -> None:
        """SERVING after anything else while the breaker is open: probe now, in full."""
        guard = upstream.guard
        breaker = guard.breaker
        if new != HEALTH_SERVING or old == HEALTH_SERVING or breaker is None:
            return
        if breaker.state not in PROBE_STATES or guard.last_call is None:
            return
        breaker.probe_now()
        log.info("breaker probe on SERVING", extra={"upstream": upstream.name})
        calls = breaker.config.permitted_calls_in_half_open
        self._tasks.start(
            f"serving probe {upstream.name}", functools.partial(self._probe, guard, calls)
        )

    async def _probe(self, guard: Guard, calls: int = 1) -> None:
        """`calls` probes at once (a half-open breaker decides once it has them all)."""
        last_call = guard.last_call
        if last_call is None:  # forgotten since: it failed through the request's own fault
            return
        attempts = Attempts()

        async def one() -> None:
            timing = Timing(Deadline.after(self.timeout_s), 0.0, 0.0, self.timeout_s)
            try:
                await guarded_call(guard, last_call, timing, attempts)
            except CallFailed:
                pass

        await asyncio.gather(*(one() for _ in range(calls)))
        made = [a for a in attempts.records if a.outcome != "BREAKER_OPEN"]
        if made:
            log.info(
                "breaker probe",
                extra={
                    "upstream": guard.name,
                    "outcome": made[-1].outcome,
                    "calls": len(made),
                    "breaker_state": guard.breaker_state,
                },
            )
