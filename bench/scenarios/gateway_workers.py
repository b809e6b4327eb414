"""Scenario: gateway throughput with 1 and with 2 worker processes.

The upstreams are one stub process with canned replies (bench/stub_upstreams.py), so the
gateway, not the components, is what limits throughput. Two gateways run side by side
over it (`--workers 1` and `--workers 2`) and closed-loop load alternates between them
(A B, B A, ...). The kernel spreads connections, not calls, across workers, so the load
generator opens `CONNECTIONS` connections to each gateway and spreads its workers over
them. Gateway CPU counts the parent and its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.mesh import QUIET, Tail, cpu_seconds_of, cpu_seconds_of_tree, own_cpu_seconds
from bench.report import LOAD_COLUMNS, ScenarioResult, markdown_table
from bench.stats import summarise
from harag.v1 import gateway_pb2_grpc
from harag_cli.localports import free_port
from harag_cli.supervisor import ProcessSpec, Supervisor

CONCURRENCY = 32
CONNECTIONS = 8
ROUNDS = 6
WORKER_COUNTS = (1, 2)


@dataclass
class Side:
    workers: int
    address: str
    runs: list[LoadResult] = field(default_factory=list)
    gateway_cpu_s: float = 0.0
    others_cpu_s: float = 0.0  # the stub upstreams and the load generator
    busy_s: float = 0.0  # wall time under load
    answers: int = 0


@contextlib.asynccontextmanager
async def stub_and_gateways() -> AsyncIterator[tuple[Supervisor, dict[int, ProcessSpec]]]:
    stub_port = free_port()
    stub = ProcessSpec(
        "stub-upstreams",
        [sys.executable, "-m", "bench.stub_upstreams", "--port", str(stub_port)],
        stub_port,
    )
    chains = {
        f"HARAG_{component.upper()}_CHAIN": (
            f"{component}-primary={stub.address},{component}-fallback={stub.address}"
        )
        for component in ("embedder", "retriever", "generator")
    }
    gateways = {}
    for workers in WORKER_COUNTS:
        port = free_port()
        gateways[workers] = ProcessSpec(
            f"gateway-{workers}-workers",
            [sys.executable, "-m", "gateway", "--workers", str(workers)],
            port,
            {**QUIET, **chains, "HARAG_PORT": str(port)},
        )
    supervisor = Supervisor([stub, *gateways.values()], sink=Tail(), restart=False)
    await supervisor.start()
    try:
        await supervisor.wait_serving(timeout_s=60)
        yield supervisor, gateways
    finally:
        await supervisor.stop()


async def spread_load(channels: list[grpc.aio.Channel], spec: LoadSpec) -> LoadResult:
    """`spec.concurrency` closed-loop workers spread evenly over the connections."""
    each = LoadSpec(
        concurrency=max(1, spec.concurrency // len(channels)),
        duration_s=spec.duration_s,
        warmup_s=spec.warmup_s,
    )
    parts = await asyncio.gather(
        *(run_load(gateway_pb2_grpc.RagGatewayServiceStub(c), each) for c in channels)
    )
    samples = [s for part in parts for s in part.samples]
    measured = [s for s in samples if s.due_s >= spec.warmup_s]
    return LoadResult(spec, samples, summarise(measured, spec.duration_s))


async def run(
    duration_s: float = 4.0, warmup_s: float = 1.0, rounds: int = ROUNDS
) -> ScenarioResult:
    spec = LoadSpec(concurrency=CONCURRENCY, duration_s=duration_s, warmup_s=warmup_s)
    async with stub_and_gateways() as (supervisor, gateways):
        sides = [Side(workers, spec_.address) for workers, spec_ in gateways.items()]
        channels = {
            side.workers: [
                grpc.aio.insecure_channel(
                    side.address, options=[("grpc.use_local_subchannel_pool", 1)]
                )
                for _ in range(CONNECTIONS)
            ]
            for side in sides
        }
        try:
            warm = LoadSpec(concurrency=CONCURRENCY, duration_s=2.0, warmup_s=0.0)
            for side in sides:
                await spread_load(channels[side.workers], warm)
            for round_no in range(rounds):
                for side in sides if round_no % 2 == 0 else reversed(sides):
                    pid = supervisor.procs[gateways[side.workers].name].pid
                    stub = supervisor.procs["stub-upstreams"].pid
                    before = cpu_seconds_of_tree(pid)
                    others = cpu_seconds_of(stub) + own_cpu_seconds()
                    started = time.perf_counter()
                    result = await spread_load(channels[side.workers], spec)
                    side.busy_s += time.perf_counter() - started
                    side.gateway_cpu_s += cpu_seconds_of_tree(pid) - before
                    side.others_cpu_s += cpu_seconds_of(stub) + own_cpu_seconds() - others
                    side.answers += sum(s.ok for s in result.samples)
                    side.runs.append(result)
        finally:
            for conns in channels.values():
                for channel in conns:
                    await channel.close()
    return result_of(sides, rounds, duration_s)


def result_of(sides: list[Side], rounds: int, duration_s: float) -> ScenarioResult:
    rows = []
    for side in sides:
        samples = [s for r in side.runs for s in r.measured()]
        summary = summarise(samples, sum(r.spec.duration_s for r in side.runs)).as_dict()
        rows.append(
            {
                "run": f"{side.workers} worker{'s' if side.workers > 1 else ''}",
                **summary,
                "gateway_cpu_ms_per_answer": side.gateway_cpu_s / max(side.answers, 1) * 1000,
                "gateway_cores": side.gateway_cpu_s / side.busy_s,
                "others_cores": side.others_cpu_s / side.busy_s,
            }
        )
    one, two = sides[0], sides[-1]
    per_round = [b.summary.qps / a.summary.qps for a, b in zip(one.runs, two.runs, strict=True)]
    ratio = statistics.median(per_round)
    return ScenarioResult(
        name="gateway_workers",
        title="Gateway worker processes over cheap upstreams",
        table=markdown_table(
            rows,
            {
                **LOAD_COLUMNS,
                "gateway_cpu_ms_per_answer": "gateway CPU ms / answer",
                "gateway_cores": "gateway cores",
                "others_cores": "stub + load generator cores",
            },
        ),
        data={"rows": rows, "throughput_ratio": ratio, "per_round": per_round},
        notes=[
            f"2 workers / 1 worker: throughput ratio {ratio:.3f}, the median of the per-round "
            "ratios (" + ", ".join(f"{x:.3f}" for x in per_round) + ").",
            f"Closed loop, concurrency {CONCURRENCY} over {CONNECTIONS} connections per "
            f"gateway, unique queries, {rounds} alternating rounds of {duration_s:g} s. "
            "Upstreams: one stub process with canned replies (bench/stub_upstreams.py); the "
            "stub and the load generator share the machine's CPUs with the gateway, so on a "
            "machine with few cores a second worker gains less than a core's worth. "
            "'cores': CPU seconds per second of load, for the gateway (parent and workers) "
            "and for the stub and the load generator together: a second worker can only "
            f"use what they and other work leave of the machine's {os.cpu_count()} CPUs.",
        ],
    )
