"""Scenario 5: a primary failing 100% for 30 s; how many extra calls do retries add?

embedder-primary fails every call with UNAVAILABLE, the one code the gateway retries.
The breaker is switched off on this gateway, so the retry budget alone has to keep the
retries in check (with the breaker on, the primary would soon get no calls at all; that
run is reported too). Calls that reached the primary are counted by its fault injector;
each query makes one logical call to it, so amplification = calls / queries.
"""

from __future__ import annotations

import math

from bench.loadgen import LoadSpec, run_load
from bench.mesh import BenchMesh
from bench.report import ScenarioResult, Target, markdown_table
from harag.v1 import fault_injection_pb2

UPSTREAM = "embedder-primary"
UNAVAILABLE = 14
CONCURRENCY = 8
BUDGET_RATIO = 0.2  # the gateway's defaults: retry_budget_ratio ...
FLOOR_PER_S = 3.0  # ... retry_budget_min_per_s ...
WINDOW_S = 10  # ... and retry_budget_window_s
COLUMNS = {
    "gateway": "gateway",
    "queries": "queries",
    "calls": "calls to the primary",
    "amplification": "calls / queries",
    "allowed": "allowed (1.2 + floor / queries)",
    "errors": "failed queries",
}


def budget_floor(duration_s: float) -> float:
    """Most extra calls the floor can add in `duration_s`: min_per_s * window_s per window,
    and a rolling window of window_s whole seconds spans as little as window_s - 1."""
    return FLOOR_PER_S * WINDOW_S * math.ceil(duration_s / (WINDOW_S - 1))


async def _measure(mesh: BenchMesh, address: str, label: str, duration_s: float) -> dict:
    before = await mesh.injected(UPSTREAM)
    spec = LoadSpec(concurrency=CONCURRENCY, duration_s=duration_s, warmup_s=0.0)
    load = await run_load(mesh.gateway(address), spec)
    calls = await mesh.injected(UPSTREAM) - before
    queries = len(load.samples)
    floor = budget_floor(duration_s)
    return {
        "gateway": label,
        "queries": queries,
        "calls": calls,
        "amplification": calls / queries,
        "allowed": 1 + BUDGET_RATIO + floor / queries,
        "errors": sum(not s.ok for s in load.samples),
        "qps": load.summary.qps,
        "p99_ms": load.summary.p99_ms,
    }


async def run(duration_s: float = 30.0, with_breaker_s: float = 10.0) -> ScenarioResult:
    async with BenchMesh() as mesh:
        no_breaker = await mesh.add_gateway(
            "gateway-no-breaker", {"HARAG_BREAKER_ENABLED": "false"}
        )
        fault = fault_injection_pb2.Fault(error_rate=1.0, error_code=UNAVAILABLE, methods=["Embed"])
        await mesh.set_fault(UPSTREAM, fault)
        rows = [await _measure(mesh, no_breaker, "retry budget only (breaker off)", duration_s)]
        rows.append(
            await _measure(mesh, mesh.gateway_address, "defaults (breaker on)", with_breaker_s)
        )
    budget_only = rows[0]
    return ScenarioResult(
        name="retry_budget",
        title="5. A primary failing 100%: retry amplification",
        table=markdown_table(rows, COLUMNS),
        data={"rows": rows},
        targets=[
            Target(
                "calls / queries, retry budget only",
                round(budget_only["amplification"], 3),
                f"<= {budget_only['allowed']:.3f} (1.2 + floor)",
                budget_only["amplification"] <= budget_only["allowed"],
            )
        ],
        notes=[
            f"Closed loop, concurrency {CONCURRENCY}; {duration_s:g} s without a breaker, then "
            f"{with_breaker_s:g} s with the default gateway. Up to 3 attempts per call; the "
            f"budget allows retries of {BUDGET_RATIO:.0%} of requests plus "
            f"{FLOOR_PER_S:g}/s over a {WINDOW_S} s window (the floor: at most "
            f"{budget_floor(duration_s):.0f} extra calls in {duration_s:g} s).",
        ],
    )
