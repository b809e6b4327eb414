"""Active breaker probes: an open breaker with no traffic still gets its probe calls.

A breaker moves OPEN -> HALF_OPEN -> CLOSED only when calls ask it for permits. A fallback
sees traffic only while its primary is failing, so after both recover it would stay open
(and the system DEGRADED) until the next outage. The prober replays each upstream's most
recent request (only requests safe to repeat are remembered) through the upstream's own
guard whenever its breaker would admit a probe, so the result counts like any other call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.resilience.breaker_types import CircuitState
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Attempts, CallFailed, Guard, Timing, guarded_call
from gateway.upstreams import Upstream

log = logging.getLogger("harag.prober")

PROBE_STATES = (CircuitState.OPEN, CircuitState.HALF_OPEN)


class BreakerProber:
    def __init__(self, upstreams: list[Upstream], interval_s: float, timeout_s: float) -> None:
        self.upstreams = upstreams
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s > 0:
            self._loop_task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.probe_due()

    def probe_due(self) -> None:
        """Starts one probe per upstream whose breaker is open or half-open, if none runs."""
        for upstream in self.upstreams:
            guard = upstream.guard
            breaker = guard.breaker
            if breaker is None or guard.last_call is None or breaker.state not in PROBE_STATES:
                continue
            running = self._in_flight.get(upstream.name)
            if running is not None and not running.done():
                continue
            self._in_flight[upstream.name] = asyncio.create_task(self._probe(guard))

    async def _probe(self, guard: Guard) -> None:
        assert guard.last_call is not None
        timing = Timing(Deadline.after(self.timeout_s), 0.0, 0.0, self.timeout_s)
        attempts = Attempts()
        try:
            await guarded_call(guard, guard.last_call, timing, attempts)
        except CallFailed:
            pass
        made = [a for a in attempts.records if a.outcome != "BREAKER_OPEN"]
        if made:
            log.info(
                "breaker probe",
                extra={
                    "upstream": guard.name,
                    "outcome": made[-1].outcome,
                    "breaker_state": guard.breaker_state,
                },
            )
