"""Scenario 1: the healthy full mesh at rising concurrency, to find the saturation QPS."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bench.loadgen import LoadSpec, run_load
from bench.mesh import BenchMesh
from bench.report import ScenarioResult, Target, markdown_table
from bench.scenarios.transitions import breaker_transitions, made_since

CONCURRENCY = (1, 8, 32, 128)
COLUMNS = {
    "concurrency": "concurrency",
    "qps": "QPS",
    "p50_ms": "p50 ms",
    "p90_ms": "p90 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
    "degraded_share": "degraded",
    "errors": "errors",
    "breaker_transitions": "breaker transitions",
}


async def run(
    duration_s: float = 8.0, warmup_s: float = 2.0, levels: Sequence[int] = CONCURRENCY
) -> ScenarioResult:
    rows = []
    async with BenchMesh() as mesh:
        for concurrency in levels:
            spec = LoadSpec(concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s)
            transitions = await breaker_transitions(mesh.gateway_address)
            before, started = mesh.cpu_seconds(), time.perf_counter()
            result = await run_load(mesh.gateway(), spec)
            wall = time.perf_counter() - started
            used = {k: (v - before.get(k, 0.0)) / wall for k, v in mesh.cpu_seconds().items()}
            made = made_since(transitions, await breaker_transitions(mesh.gateway_address))
            rows.append(
                {
                    "concurrency": concurrency,
                    **result.summary.as_dict(),
                    "cpu": used,
                    "breaker_transitions": sum(made.values()),
                    "transitions_by_upstream": made,
                }
            )
    best = max(rows, key=lambda r: r["qps"])
    cpu_rows = [
        {"process": name, **{str(r["concurrency"]): r["cpu"][name] for r in rows}}
        for name in rows[0]["cpu"]
    ]
    cpu_columns = {"process": "CPU cores used by", **{str(c): f"c={c}" for c in levels}}
    return ScenarioResult(
        name="saturation",
        title="1. Healthy mesh at rising concurrency",
        table=markdown_table(rows, COLUMNS) + "\n\n" + markdown_table(cpu_rows, cpu_columns),
        data={"rows": rows, "saturation_qps": best["qps"], "at_concurrency": best["concurrency"]},
        targets=[
            Target(
                "breaker transitions at every concurrency (healthy mesh)",
                sum(r["breaker_transitions"] for r in rows),
                "0",
                all(r["breaker_transitions"] == 0 for r in rows),
            )
        ],
        notes=[
            f"Saturation: {best['qps']:.0f} QPS (highest throughput, at concurrency "
            f"{best['concurrency']}). Past it, more concurrency only adds queueing latency.",
            "CPU cores used by each process while the load ran (1.0 = one core busy the whole "
            "time); the machine has only so many, and every process shares them.",
            "'degraded' answers at healthy load are hedges won by a fallback tier: the "
            "primary was slower than its own p95 and the fallback answered first.",
            "Breaker transitions: state changes of the gateway's breakers while each level ran "
            "(ListBreakers' transitions counter); a healthy mesh, however loaded, makes none.",
        ],
    )
