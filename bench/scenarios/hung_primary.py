"""Scenario 4: embedder-primary hangs under steady load; the breaker opens; the fault clears.

Timeline (closed loop, every query with a 1 s deadline): healthy, then embedder-primary
hangs (calls never reply), then the fault clears and the breaker recovers. A poller records
the gateway's breaker state every 50 ms. Reported: the p99 while healthy, from the fault
until the breaker opens, and from the breaker opening until the fault clears, as ratios
to healthy; per-second p99 and the embed stage's tier share feed the timeline plot.
Default gateway settings throughout: the open wait doubles on each failed probe (5 s,
10 s, 20 s, ...), so the recovery part is long enough for the third wait to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.loadgen import LoadSpec, run_load
from bench.mesh import BenchMesh
from bench.report import ScenarioResult, Target, markdown_table
from bench.stats import Sample, percentile, summarise
from harag.v1 import fault_injection_pb2

UPSTREAM = "embedder-primary"
CONCURRENCY = 8
DEADLINE_S = 1.0
COLUMNS = {
    "window": "window",
    "requests": "answers",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
    "p99_ratio": "p99 / healthy",
    "degraded_share": "degraded",
    "errors": "errors",
}


async def _poll_breaker(
    mesh: BenchMesh, origin: float, log: list[tuple[float, str]], stop: asyncio.Event
) -> None:
    last = ""
    while not stop.is_set():
        state = (await mesh.breakers())[UPSTREAM]
        if state != last:
            log.append((time.perf_counter() - origin, state))
            last = state
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


def _first(log: list[tuple[float, str]], state: str, after: float) -> float | None:
    return next((t for t, s in log if s == state and t >= after), None)


def _window(name: str, samples: list[Sample], start: float, end: float, healthy_p99: float) -> dict:
    inside = [s for s in samples if start <= s.due_s < end]
    summary = summarise(inside, max(end - start, 1e-9)).as_dict()
    return {"window": name, **summary, "p99_ratio": summary["p99_ms"] / healthy_p99}


def timeline(samples: list[Sample], seconds: int) -> list[dict]:
    """Per second: p99 of OK answers and the embed stage's share per tier."""
    rows = []
    for sec in range(seconds):
        inside = [s for s in samples if sec <= s.due_s < sec + 1 and s.ok]
        latencies = sorted(s.latency_s * 1000 for s in inside)
        embed = [("local" if s.local[0] else f"tier{s.tiers[0]}") for s in inside if s.tiers]
        share = (
            {k: embed.count(k) / len(embed) for k in ("tier0", "tier1", "local")} if embed else {}
        )
        rows.append(
            {"second": sec, "p99_ms": percentile(latencies, 99), "answers": len(inside), **share}
        )
    return rows


async def run(
    healthy_s: float = 12.0, hung_s: float = 20.0, recover_s: float = 25.0
) -> ScenarioResult:
    warmup_s = 2.0
    total = healthy_s + hung_s + recover_s
    spec = LoadSpec(
        concurrency=CONCURRENCY,
        duration_s=total - warmup_s,
        warmup_s=warmup_s,
        deadline_s=DEADLINE_S,
    )
    log: list[tuple[float, str]] = []
    stop = asyncio.Event()
    async with BenchMesh() as mesh:
        origin = time.perf_counter()
        poller = asyncio.create_task(_poll_breaker(mesh, origin, log, stop))

        async def faults() -> None:
            await asyncio.sleep(healthy_s - (time.perf_counter() - origin))
            await mesh.set_fault(UPSTREAM, fault_injection_pb2.Fault(hang=True))
            await asyncio.sleep(healthy_s + hung_s - (time.perf_counter() - origin))
            await mesh.clear_faults(UPSTREAM)

        load, _ = await asyncio.gather(run_load(mesh.gateway(), spec), faults())
        stop.set()
        await poller
    samples = load.samples
    opened = _first(log, "OPEN", healthy_s)
    cleared = healthy_s + hung_s
    closed = _first(log, "CLOSED", cleared)
    healthy = summarise(
        [s for s in samples if warmup_s <= s.due_s < healthy_s], healthy_s - warmup_s
    )
    windows = [_window("healthy", samples, warmup_s, healthy_s, healthy.p99_ms)]
    if opened is not None:
        windows += [
            _window("hung, breaker not yet open", samples, healthy_s, opened, healthy.p99_ms),
            _window("hung, breaker open", samples, opened, cleared, healthy.p99_ms),
        ]
    else:
        windows.append(
            _window("hung (breaker never opened)", samples, healthy_s, cleared, healthy.p99_ms)
        )
    windows.append(_window("after the fault cleared", samples, cleared, total, healthy.p99_ms))
    open_ratio = windows[2]["p99_ratio"] if opened is not None else float("nan")
    events = {
        "fault_s": healthy_s,
        "breaker_open_s": opened,
        "fault_cleared_s": cleared,
        "breaker_closed_s": closed,
        "transitions": log,
    }
    notes = [
        f"Closed loop, concurrency {CONCURRENCY}, {DEADLINE_S:g} s deadline per query, default "
        "gateway settings. Every query was answered OK: "
        f"{sum(s.ok for s in samples)} of {len(samples)}.",
        f"Breaker opened {opened - healthy_s:.2f} s after the fault"
        if opened is not None
        else "The breaker never opened.",
    ]
    if closed is not None:
        notes.append(f"Breaker closed {closed - cleared:.2f} s after the fault cleared.")
    return ScenarioResult(
        name="hung_primary",
        title="4. embedder-primary hung",
        table=markdown_table(windows, COLUMNS),
        data={"windows": windows, "events": events, "timeline": timeline(samples, int(total))},
        targets=[
            Target(
                "p99 with the breaker open / healthy p99",
                round(open_ratio, 3),
                "<= 1.50",
                open_ratio <= 1.5,
            )
        ],
        notes=notes,
    )
