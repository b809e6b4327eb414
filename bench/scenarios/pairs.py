"""Scenarios 2 and 3: two gateways over the same components, measured alternately.

Both gateways of a pair run side by side over the same six component processes, and the
load alternates between them (A B, B A, A B, ...) so that drift over the run (CPU
frequency, page cache, a noisy neighbour) lands on both sides equally. Each side's QPS is
its OK answers over its total measured time; its percentiles are over all its answers.

2. The resilience gateway against `--bare` (same upstream calls: no breakers, retries,
   hedging, bulkheads, coalescing or cache).
3. Tracing on (every process samples every request and exports OTLP to a collector)
   against tracing off (the gateway's sampler is `always_off`; components sample by their
   parent, so the whole request goes unrecorded).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.mesh import BenchMesh, free_port
from bench.otlp_sink import OtlpSink
from bench.report import ScenarioResult, Target, markdown_table
from bench.stats import Sample, summarise

CONCURRENCY = 32  # at the knee of the saturation curve: throughput is what is compared
ROUNDS = 4


@dataclass
class Side:
    label: str
    address: str
    runs: list[LoadResult]

    def pooled(self) -> dict[str, object]:
        samples: list[Sample] = [s for r in self.runs for s in r.measured()]
        duration = sum(r.spec.duration_s for r in self.runs)
        return {"run": self.label, **summarise(samples, duration).as_dict()}


async def alternate(
    mesh: BenchMesh, sides: Mapping[str, str], spec: LoadSpec, rounds: int
) -> list[Side]:
    """Runs `spec` against each address in turn, reversing the order every round."""
    out = [Side(label, address, []) for label, address in sides.items()]
    for round_no in range(rounds):
        for side in out if round_no % 2 == 0 else reversed(out):
            side.runs.append(await run_load(mesh.gateway(side.address), spec))
    return out


def _ratio_result(
    name: str, title: str, sides: list[Side], target_name: str, min_ratio: float, notes: list[str]
) -> ScenarioResult:
    rows = [side.pooled() for side in sides]
    measured, baseline = rows
    ratio = measured["qps"] / baseline["qps"]
    per_round = [
        a.summary.qps / b.summary.qps for a, b in zip(sides[0].runs, sides[1].runs, strict=True)
    ]
    return ScenarioResult(
        name=name,
        title=title,
        table=markdown_table(rows),
        data={
            "rows": rows,
            "throughput_ratio": ratio,
            "per_round_ratio": per_round,
            "p50_ratio": measured["p50_ms"] / baseline["p50_ms"],
            "p99_ratio": measured["p99_ms"] / baseline["p99_ms"],
        },
        targets=[Target(target_name, round(ratio, 3), f">= {min_ratio:.2f}", ratio >= min_ratio)],
        notes=[
            f"Throughput ratio {ratio:.3f} (per round: "
            + ", ".join(f"{r:.3f}" for r in per_round)
            + f"); p50 ratio {measured['p50_ms'] / baseline['p50_ms']:.2f}, "
            f"p99 ratio {measured['p99_ms'] / baseline['p99_ms']:.2f}.",
            *notes,
        ],
    )


async def resilience_vs_bare(
    duration_s: float = 6.0, warmup_s: float = 1.0, rounds: int = ROUNDS
) -> ScenarioResult:
    spec = LoadSpec(concurrency=CONCURRENCY, duration_s=duration_s, warmup_s=warmup_s)
    async with BenchMesh() as mesh:
        bare = await mesh.add_gateway("gateway-bare", {}, argv_extra=["--bare"])
        sides = await alternate(
            mesh, {"resilience": mesh.gateway_address, "bare": bare}, spec, rounds
        )
    return _ratio_result(
        "resilience_vs_bare",
        "2. Resilience layer against the bare gateway",
        sides,
        "resilience throughput / bare (cost <= 10%)",
        0.90,
        [
            f"Closed loop, concurrency {CONCURRENCY}, unique queries (the cache never hits), "
            f"{rounds} alternating rounds of {duration_s:g} s each side.",
        ],
    )


async def tracing_on_vs_off(
    duration_s: float = 6.0, warmup_s: float = 1.0, rounds: int = ROUNDS
) -> ScenarioResult:
    spec = LoadSpec(concurrency=CONCURRENCY, duration_s=duration_s, warmup_s=warmup_s)
    async with OtlpSink(free_port()) as sink:
        export = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "1000"}
        async with BenchMesh(env=export) as mesh:
            off = await mesh.add_gateway("gateway-untraced", {"OTEL_TRACES_SAMPLER": "always_off"})
            sides = await alternate(
                mesh, {"tracing on": mesh.gateway_address, "off": off}, spec, rounds
            )
            spans = await sink.spans()
    result = _ratio_result(
        "tracing_on_vs_off",
        "3. Tracing on against tracing off",
        sides,
        "traced throughput / untraced (cost <= 15%)",
        0.85,
        [
            "On: every process samples every request and exports OTLP/gRPC (batch span "
            f"processor) to a collector process that discards them ({spans} spans received). "
            "Off: the gateway's sampler is always_off, so its requests are unrecorded end "
            "to end (components sample by parent).",
        ],
    )
    result.data["spans_exported"] = spans
    return result
