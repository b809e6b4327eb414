"""Scenario 6: open-loop overload at 2x the saturation QPS.

Queries arrive at twice the rate the mesh can answer, whatever the replies do. The gateway
bounds its in-flight requests (`max_inflight_requests`) and sheds the excess at once with
RESOURCE_EXHAUSTED + RetryInfo, so the requests it accepts keep a bounded latency and
goodput stays near saturation, instead of every request queueing until its deadline.
"""

from __future__ import annotations

from bench.loadgen import LoadSpec, run_load
from bench.mesh import BenchMesh
from bench.report import ScenarioResult, Target, markdown_table
from bench.stats import Sample, percentile

DEADLINE_S = 5.0
COLUMNS = {
    "run": "run",
    "offered_qps": "offered QPS",
    "qps": "goodput QPS",
    "shed_share": "shed",
    "p50_ms": "p50 ms (accepted)",
    "p99_ms": "p99 ms (accepted)",
    "max_ms": "max ms",
    "errors": "errors",
    "client_lag_p99_ms": "client send lag p99 ms",
}


def goodput(samples: list[Sample], start_s: float, end_s: float) -> float:
    """OK answers per second that *completed* inside the window (open loop: the answers
    to queries due near the end arrive after it, and must not be counted in)."""
    done = [s for s in samples if s.ok and start_s <= s.due_s + s.latency_s < end_s]
    return len(done) / (end_s - start_s)


async def run(
    saturation_qps: float, duration_s: float = 15.0, warmup_s: float = 3.0
) -> ScenarioResult:
    rows = []
    async with BenchMesh() as mesh:
        for factor in (1.0, 2.0):
            spec = LoadSpec(
                rate=factor * saturation_qps,
                duration_s=duration_s,
                warmup_s=warmup_s,
                deadline_s=DEADLINE_S,
            )
            load = await run_load(mesh.gateway(), spec)
            summary = load.summary.as_dict()
            shed = summary["errors"].get("RESOURCE_EXHAUSTED", 0)
            rows.append(
                {
                    "run": f"{factor:g}x saturation ({factor * saturation_qps:.0f}/s)",
                    **summary,
                    "qps": goodput(load.samples, warmup_s, warmup_s + duration_s),
                    "shed_share": shed / max(summary["requests"], 1),
                    "client_lag_p99_ms": percentile(
                        sorted(s.lag_s * 1000 for s in load.samples), 99
                    ),
                }
            )
    over = rows[-1]
    others = {k: v for k, v in over["errors"].items() if k != "RESOURCE_EXHAUSTED"}
    goodput_share = over["qps"] / saturation_qps
    no_collapse = goodput_share >= 0.8 and over["p99_ms"] < DEADLINE_S * 1000 and not others
    return ScenarioResult(
        name="overload",
        title="6. Overload at 2x saturation",
        table=markdown_table(rows, COLUMNS),
        data={"rows": rows, "saturation_qps": saturation_qps, "goodput_share": goodput_share},
        targets=[
            Target(
                "no collapse: goodput / saturation at 2x (and accepted p99 < deadline, "
                "no errors but shedding)",
                round(goodput_share, 3),
                ">= 0.80",
                no_collapse,
            )
        ],
        notes=[
            "Goodput counts OK answers completed inside the measured window. Client send lag: "
            "how late the load generator (sharing the CPUs) sent queries after they were due.",
            f"Open loop (latency counted from when each query was due), {DEADLINE_S:g} s "
            f"deadline, saturation {saturation_qps:.0f} QPS from scenario 1, default gateway "
            "settings (max_inflight_requests 256).",
        ],
    )
