"""Active breaker probes: an open breaker with no traffic still gets its probe calls.

A breaker moves OPEN -> HALF_OPEN -> CLOSED only when calls ask it for permits. A fallback
sees traffic only while its primary is failing, so after both recover it would stay open
(and the system DEGRADED) until the next outage. The prober replays each upstream's most
recent request (only requests safe to repeat are remembered) through the upstream's own
guard whenever its breaker would admit a probe, so the result counts like any other call.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from gateway.resilience.breaker_types import CircuitState
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Attempts, CallFailed, Guard, Timing, guarded_call
from gateway.upstreams import Upstream
from servicekit.background import BackgroundTasks

log = logging.getLogger("harag.prober")

PROBE_STATES = (CircuitState.OPEN, CircuitState.HALF_OPEN)
LOOP = "loop"


class BreakerProber:
    def __init__(self, upstreams: list[Upstream], interval_s: float, timeout_s: float) -> None:
        self.upstreams = upstreams
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        # The loop, and one probe per upstream at most (named after the upstream).
        self._tasks = BackgroundTasks("breaker prober")

    def start(self) -> None:
        if self.interval_s > 0:
            self._tasks.start(LOOP, self._loop)

    async def stop(self) -> None:
        await self._tasks.stop()

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
            self._tasks.start(f"probe {upstream.name}", functools.partial(self._probe, guard))

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
