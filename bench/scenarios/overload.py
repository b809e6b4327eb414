"""Scenario 6: open-loop overload at 2x the saturation QPS.

Queries arrive at twice the rate the mesh can answer, whatever the replies do. The gateway
bounds its in-flight requests (`max_inflight_requests`) and sheds the excess at once with
RESOURCE_EXHAUSTED + RetryInfo, so the requests it accepts keep a bounded latency and
goodput stays near saturation, instead of every request queueing until its deadline.
"""

from __future__ import annotations

from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.mesh import BenchMesh, free_port
from bench.report import ScenarioResult, Target, markdown_table
from bench.stats import Sample, percentile

DEADLINE_S = 5.0
TIGHT = 16  # a second gateway with a much lower in-flight limit, for comparison
COLUMNS = {
    "run": "run",
    "offered_qps": "offered QPS",
    "qps": "goodput QPS",
    "shed_share": "shed",
    "p50_ms": "p50 ms (accepted)",
    "p99_ms": "p99 ms (accepted)",
    "max_ms": "max ms",
    "errors": "errors",
    "handler_mean_ms": "in the handler, mean ms",
    "client_lag_p99_ms": "client send lag p99 ms",
}
DURATION = "harag_gateway_request_duration_seconds"


async def _handler_totals(mesh: BenchMesh, port: int) -> tuple[float, float]:
    """(seconds, requests) the gateway's Query handler has spent and served so far."""
    total = await mesh.gateway_metric(port, f"{DURATION}_sum")
    return total, await mesh.gateway_metric(port, f"{DURATION}_count")


def _row(
    label: str,
    load: LoadResult,
    spec: LoadSpec,
    before: tuple[float, float],
    after: tuple[float, float],
) -> dict:
    summary = load.summary.as_dict()
    handled = after[1] - before[1]
    shed = summary["errors"].get("RESOURCE_EXHAUSTED", 0)
    return {
        **summary,
        "run": label,
        "qps": goodput(load.samples, spec.warmup_s, spec.warmup_s + spec.duration_s),
        "shed_share": shed / max(summary["requests"], 1),
        "handler_mean_ms": (after[0] - before[0]) / handled * 1000 if handled else 0.0,
        "client_lag_p99_ms": percentile(sorted(s.lag_s * 1000 for s in load.samples), 99),
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
    port, tight_port = free_port(), free_port()
    async with BenchMesh(gateway_env={"HARAG_METRICS_PORT": str(port)}) as mesh:
        tight = await mesh.add_gateway(
            "gateway-tight",
            {"HARAG_METRICS_PORT": str(tight_port), "HARAG_MAX_INFLIGHT_REQUESTS": str(TIGHT)},
        )
        runs = [
            (1.0, mesh.gateway_address, port, "default limit"),
            (2.0, mesh.gateway_address, port, "default limit"),
            (2.0, tight, tight_port, f"max_inflight_requests={TIGHT}"),
        ]
        for factor, address, metrics_port, label in runs:
            spec = LoadSpec(
                rate=factor * saturation_qps,
                duration_s=duration_s,
                warmup_s=warmup_s,
                deadline_s=DEADLINE_S,
            )
            before = await _handler_totals(mesh, metrics_port)
            load = await run_load(mesh.gateway(address), spec)
            after = await _handler_totals(mesh, metrics_port)
            rows.append(
                _row(
                    f"{factor:g}x ({factor * saturation_qps:.0f}/s), {label}",
                    load,
                    spec,
                    before,
                    after,
                )
            )
    over = rows[1]
    failed = sum(n for code, n in over["errors"].items() if code != "RESOURCE_EXHAUSTED")
    failed_share = failed / max(over["requests"], 1)
    goodput_share = over["qps"] / saturation_qps
    no_collapse = failed == 0 and goodput_share >= 0.8 and over["p99_ms"] < DEADLINE_S * 1000
    return ScenarioResult(
        name="overload",
        title="6. Overload at 2x saturation",
        table=markdown_table(rows, COLUMNS),
        data={
            "rows": rows,
            "saturation_qps": saturation_qps,
            "goodput_share": goodput_share,
            "failed_share": failed_share,
        },
        targets=[
            Target(
                "no collapse at 2x: share of queries failed other than by shedding",
                round(failed_share, 3),
                "0 (and goodput >= 0.8x saturation, accepted p99 < deadline)",
                no_collapse,
            )
        ],
        notes=[
            "Goodput counts OK answers completed inside the measured window. 'In the handler' is "
            "the gateway's own request duration metric (from the handler's start to its reply), "
            "over warm-up and measured time; the rest of a query's latency is spent queued "
            "before the handler runs. Client send lag: how late the load generator (sharing "
            "the CPUs) sent queries after they were due.",
            f"Open loop (latency counted from when each query was due), {DEADLINE_S:g} s "
            f"deadline, saturation {saturation_qps:.0f} QPS from scenario 1. The first two "
            "rows: default gateway settings (max_inflight_requests 256); the third: a second "
            f"gateway over the same components with max_inflight_requests {TIGHT}.",
        ],
    )
