"""Scenario 6: open-loop overload at 2x the saturation QPS.

Queries arrive at twice the rate the mesh can answer, whatever the replies do. The
gateway's admission control (gateway/admission.py) measures how long new queries wait
inside it before they start, and sheds the excess at the door with RESOURCE_EXHAUSTED +
RetryInfo, so the queries it accepts keep a bounded latency and goodput holds, instead of
every query queueing until its deadline. A second gateway over the same components, with
admission control off, shows what happens without it.
"""

from __future__ import annotations

import asyncio

from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.mesh import BenchMesh
from bench.report import ScenarioResult, Target, markdown_table
from bench.scenarios.transitions import breaker_transitions, made_since
from bench.stats import Sample, percentile
from harag_cli.localports import free_port

DEADLINE_S = 5.0
P99_BOUND = DEADLINE_S / 4  # "bounded": accepted p99 well inside the callers' deadline
GOODPUT_KEPT = 0.8  # "no collapse": 2x keeps this share of the 1x goodput
SETTLE_S = 5.0  # between runs: let the previous run's stragglers finish
COLUMNS = {
    "run": "run",
    "offered_qps": "offered QPS",
    "qps": "goodput QPS",
    "shed_share": "shed",
    "p50_ms": "p50 ms (accepted)",
    "p99_ms": "p99 ms (accepted)",
    "max_ms": "max ms",
    "degraded_share": "degraded",
    "errors": "errors",
    "handler_mean_ms": "in the handler, mean ms",
    "client_lag_p99_ms": "client send lag p99 ms",
    "breaker_transitions": "breaker transitions",
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
    port, off_port = free_port(), free_port()
    async with BenchMesh(gateway_env={"HARAG_METRICS_PORT": str(port)}) as mesh:
        without = await mesh.add_gateway(
            "gateway-no-admission",
            {"HARAG_METRICS_PORT": str(off_port), "HARAG_ADMISSION_QUEUE_TARGET_S": "0"},
        )
        runs = [
            (1.0, mesh.gateway_address, port, "admission control on"),
            (2.0, mesh.gateway_address, port, "admission control on"),
            (2.0, without, off_port, "admission control off"),
        ]
        for factor, address, metrics_port, label in runs:
            spec = LoadSpec(
                rate=factor * saturation_qps,
                duration_s=duration_s,
                warmup_s=warmup_s,
                deadline_s=DEADLINE_S,
            )
            before = await _handler_totals(mesh, metrics_port)
            transitions = await breaker_transitions(address)
            load = await run_load(mesh.gateway(address), spec)
            after = await _handler_totals(mesh, metrics_port)
            row = _row(
                f"{factor:g}x ({factor * saturation_qps:.0f}/s), {label}",
                load,
                spec,
                before,
                after,
            )
            made = made_since(transitions, await breaker_transitions(address))
            row["breaker_transitions"] = sum(made.values())
            row["transitions_by_upstream"] = made
            rows.append(row)
            await asyncio.sleep(SETTLE_S)
    base, over, off = rows
    failed = sum(n for code, n in over["errors"].items() if code != "RESOURCE_EXHAUSTED")
    failed_share = failed / max(over["requests"], 1)
    kept = over["qps"] / base["qps"] if base["qps"] else 0.0
    off_failed = sum(n for code, n in off["errors"].items() if code != "RESOURCE_EXHAUSTED")
    return ScenarioResult(
        name="overload",
        title="6. Overload at 2x saturation",
        table=markdown_table(rows, COLUMNS),
        data={
            "rows": rows,
            "saturation_qps": saturation_qps,
            "goodput_kept": kept,
            "failed_share": failed_share,
            "goodput_vs_saturation": over["qps"] / saturation_qps,
            "without_admission_failed_share": off_failed / max(off["requests"], 1),
        },
        targets=[
            Target(
                "no collapse at 2x: queries failed other than by shedding",
                round(failed_share, 3),
                "0",
                failed == 0,
            ),
            Target(
                "no collapse at 2x: accepted p99 (ms)",
                round(over["p99_ms"]),
                f"<= {P99_BOUND * 1000:.0f} (a quarter of the deadline)",
                over["p99_ms"] <= P99_BOUND * 1000,
            ),
            Target(
                "breaker transitions at 1x and 2x (healthy upstreams)",
                base["breaker_transitions"] + over["breaker_transitions"],
                "0",
                base["breaker_transitions"] + over["breaker_transitions"] == 0,
            ),
            Target(
                "no collapse at 2x: goodput / goodput at 1x",
                round(kept, 3),
                f">= {GOODPUT_KEPT}",
                kept >= GOODPUT_KEPT,
            ),
        ],
        notes=[
            "Goodput counts OK answers completed inside the measured window. 'In the handler' is "
            "the gateway's own request duration metric (from the handler's start to its reply), "
            "over warm-up and measured time; the rest of a query's latency is spent queued "
            "in the gateway before the handler runs, in gRPC's queue of calls not yet taken. "
            "Client send lag: how late the load generator (sharing the CPUs) sent queries after "
            "they were due.",
            f"Open loop (latency counted from when each query was due), {DEADLINE_S:g} s "
            f"deadline; 1x is the saturation of scenario 1 ({saturation_qps:.0f} QPS, closed "
            "loop). An open loop sustains less than a closed one here: every query arrives "
            "on its own and wakes every process separately, where a closed loop's batches "
            "share the wake-ups, so at 1x the gateway already sheds some. The first two rows: "
            "the default gateway; the third: a second gateway over the same components with "
            "admission control off (HARAG_ADMISSION_QUEUE_TARGET_S=0), run last.",
            "Without admission control the answers that do arrive come near the deadline, "
            "and most are degraded: with little time left, the gateway falls back to whatever "
            "answers fastest, down to its local last resort. "
            f"Goodput at 2x is {over['qps'] / saturation_qps:.2f}x the closed-loop saturation. "
            "Rejecting is not free: each shed query still costs the gateway and the load "
            "generator CPU on the same two CPUs (not measured apart here).",
        ],
    )
