"""Scenario: the gateway's added latency, at concurrency 1.

One client, one query at a time, alternating query by query between paths over the same
component processes (the order rotates every round so drift lands on every path alike):

- direct: the client itself calls Embed (embedder-primary), Search (retriever-primary,
  with the vector, the model and top_k 4) and Generate (generator-primary, with the
  documents), in sequence: the same three calls the gateway makes when all is well;
- gateway: Query through the default gateway (resilience layer, spans recorded);
- gateway, untraced: the same gateway with the sampler always_off;
- gateway, no admission: the same gateway without admission control (no self-probes);
- gateway, bare: `python -m gateway --bare` (no resilience layer, spans recorded);
- minimal relay: bench/relay.py, the same three calls behind a plain grpc.aio server, and
  nothing else: what any Python grpc.aio hop costs here.

Every query text is new (a counter), so neither the answer cache nor coalescing helps and
every path does the whole work. The overhead of a gateway path is its percentile minus the
direct path's (p50 and p99); the median of per-round differences is reported alongside.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from bench.loadgen import QuerySource, corpus_questions
from bench.mesh import BenchMesh, cpu_seconds_of
from bench.report import ScenarioResult, Target, markdown_table
from bench.stats import percentile
from harag.v1 import (
    embedder_pb2,
    embedder_pb2_grpc,
    gateway_pb2,
    generator_pb2,
    generator_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)
from harag_cli.localports import free_port

ROUNDS = 600
WARMUP_ROUNDS = 30
TOP_K = 4
STAGES = ("embedder", "retriever", "generator")
DEADLINE_S = 5.0
TARGET_P50_MS = 1.0  # Linkerd's per-proxy p50 figure

Path = Callable[[str], Awaitable[None]]


def direct_path(mesh: BenchMesh) -> Path:
    embedder = embedder_pb2_grpc.EmbedderServiceStub(
        mesh.channel(mesh.by_name["embedder-primary"].address)
    )
    retriever = retriever_pb2_grpc.RetrieverServiceStub(
        mesh.channel(mesh.by_name["retriever-primary"].address)
    )
    generator = generator_pb2_grpc.GeneratorServiceStub(
        mesh.channel(mesh.by_name["generator-primary"].address)
    )

    async def run(text: str) -> None:
        embedded = await embedder.Embed(embedder_pb2.EmbedRequest(texts=[text]), timeout=DEADLINE_S)
        request = retriever_pb2.SearchRequest(query_text=text, top_k=TOP_K)
        request.query_embedding.values.extend(embedded.embeddings[0].values)
        request.model = embedded.model
        found = await retriever.Search(request, timeout=DEADLINE_S)
        await generator.Generate(
            generator_pb2.GenerateRequest(query=text, context=found.documents), timeout=DEADLINE_S
        )

    return run


def gateway_path(mesh: BenchMesh, address: str) -> Path:
    stub = mesh.gateway(address)

    async def run(text: str) -> None:
        reply = await stub.Query(gateway_pb2.QueryRequest(query=text), timeout=DEADLINE_S)
        if reply.degraded:  # a fallback path is not the path being compared
            raise RuntimeError(f"degraded answer: {[s.served_by for s in reply.stages]}")

    return run


@dataclass
class Measured:
    latencies_ms: dict[str, list[float]]  # per path, the rounds where every path answered
    failed: dict[str, int]  # queries that failed or were degraded, per path
    gateway_cpu_ms: dict[str, float]  # per gateway path: its process's CPU per query


async def measure(
    paths: dict[str, Path], pids: dict[str, int], rounds: int, warmup_rounds: int
) -> Measured:
    """One query per path per round, the order rotating. A round where a query failed or
    was degraded is left out for every path, so the paths stay paired. The CPU time of
    each gateway path's process (`pids`) is read around its own queries only."""
    source = QuerySource(corpus_questions(), unique=True)
    out = Measured({name: [] for name in paths}, dict.fromkeys(paths, 0), {})
    cpu_s = dict.fromkeys(pids, 0.0)
    names = list(paths)
    for round_no in range(warmup_rounds + rounds):
        shift = round_no % len(names)
        this_round: dict[str, float] = {}
        for name in itertools.chain(names[shift:], names[:shift]):
            cpu_before = cpu_seconds_of(pids[name]) if name in pids else 0.0
            started = time.perf_counter()
            try:
                await paths[name](source.next())
            except (grpc.aio.AioRpcError, RuntimeError):
                out.failed[name] += 1
                continue
            this_round[name] = (time.perf_counter() - started) * 1000
            if name in pids and round_no >= warmup_rounds:
                cpu_s[name] += cpu_seconds_of(pids[name]) - cpu_before
        if round_no >= warmup_rounds and len(this_round) == len(names):
            for name, latency in this_round.items():
                out.latencies_ms[name].append(latency)
    out.gateway_cpu_ms = {name: seconds / rounds * 1000 for name, seconds in cpu_s.items()}
    return out


async def run(rounds: int = ROUNDS, warmup_rounds: int = WARMUP_ROUNDS) -> ScenarioResult:
    async with BenchMesh() as mesh:
        untraced = await mesh.add_gateway("gateway-untraced", {"OTEL_TRACES_SAMPLER": "always_off"})
        unprobed = await mesh.add_gateway(
            "gateway-no-admission", {"HARAG_ADMISSION_QUEUE_TARGET_S": "0"}
        )
        bare = await mesh.add_gateway("gateway-bare", {}, argv_extra=["--bare"])
        relay_port = free_port()
        relay = await mesh.add_process(
            "relay",
            [
                sys.executable, "-m", "bench.relay", "--port", str(relay_port),
                *(f"--{c}={mesh.by_name[c + '-primary'].address}" for c in STAGES),
            ],
            relay_port,
        )  # fmt: skip
        paths = {
            "direct": direct_path(mesh),
            "gateway": gateway_path(mesh, mesh.gateway_address),
            "gateway, untraced": gateway_path(mesh, untraced),
            "gateway, no admission": gateway_path(mesh, unprobed),
            "gateway, bare": gateway_path(mesh, bare),
            "minimal relay": gateway_path(mesh, relay),
        }
        pids = {
            "gateway": mesh.pid("gateway"),
            "gateway, untraced": mesh.extra_pid("gateway-untraced"),
            "gateway, no admission": mesh.extra_pid("gateway-no-admission"),
            "gateway, bare": mesh.extra_pid("gateway-bare"),
            "minimal relay": mesh.extra_pid("relay"),
        }
        measured = await measure(paths, pids, rounds, warmup_rounds)
    return result_of(measured, rounds)


def result_of(measured: Measured, rounds: int) -> ScenarioResult:
    latencies, failed = measured.latencies_ms, measured.failed
    direct = latencies["direct"]
    direct_sorted = sorted(direct)
    rows = []
    for name, values in latencies.items():
        ordered = sorted(values)
        row: dict[str, object] = {
            "path": name,
            "queries": len(values),
            "p50_ms": percentile(ordered, 50),
            "p90_ms": percentile(ordered, 90),
            "p99_ms": percentile(ordered, 99),
        }
        if name != "direct":
            row["p50_overhead_ms"] = row["p50_ms"] - percentile(direct_sorted, 50)  # type: ignore[operator]
            row["p99_overhead_ms"] = row["p99_ms"] - percentile(direct_sorted, 99)  # type: ignore[operator]
            row["paired_median_ms"] = statistics.median(
                v - d for v, d in zip(values, direct, strict=True)
            )
            row["gateway_cpu_ms"] = measured.gateway_cpu_ms.get(name, float("nan"))
        rows.append(row)
    gateway = next(r for r in rows if r["path"] == "gateway")
    p50_overhead = float(gateway["p50_overhead_ms"])  # type: ignore[arg-type]
    columns = {
        "path": "path",
        "queries": "queries",
        "p50_ms": "p50 ms",
        "p90_ms": "p90 ms",
        "p99_ms": "p99 ms",
        "p50_overhead_ms": "p50 overhead ms",
        "p99_overhead_ms": "p99 overhead ms",
        "paired_median_ms": "median paired difference ms",
        "gateway_cpu_ms": "gateway CPU ms / query",
    }
    return ScenarioResult(
        name="gateway_overhead",
        title="Gateway added latency at concurrency 1",
        table=markdown_table(rows, columns),
        data={
            "rows": rows,
            "latencies_ms": latencies,
            "failed": failed,
            "gateway_cpu_ms": measured.gateway_cpu_ms,
            "p50_overhead_ms": p50_overhead,
        },
        targets=[
            Target(
                "gateway p50 added latency, ms (concurrency 1)",
                round(p50_overhead, 3),
                f"<= {TARGET_P50_MS:g}",
                p50_overhead <= TARGET_P50_MS,
            )
        ],
        notes=[
            f"One client, one query at a time, {rounds} rounds; each round sends one new query "
            "down every path, the order rotating. 'direct': the client calls Embed, Search and "
            "Generate on the primaries itself. Overhead: the path's percentile minus the "
            "direct path's; 'median paired difference': the median over rounds of the path's "
            "latency minus the direct query's of the same round.",
            "'untraced': the default gateway with OTEL_TRACES_SAMPLER=always_off; 'no "
            "admission': with HARAG_ADMISSION_QUEUE_TARGET_S=0 (no self-probes); 'bare': "
            "python -m gateway --bare (spans recorded). Their differences to 'gateway' are "
            "what tracing, admission control and the resilience layer add per query. "
            "'minimal relay': bench/relay.py, a Python grpc.aio server that makes the same "
            "three calls and nothing else: the floor for any Python grpc.aio gateway here.",
            "Gateway CPU ms / query: CPU time of that gateway's process (user + system, "
            "/proc) over its own queries, per query; the rest of its added latency is waiting: "
            "for the loopback hops and for a CPU (every process shares the machine's CPUs).",
            "Queries that failed or were degraded (their round is left out): "
            + ", ".join(f"{name} {n}" for name, n in failed.items())
            + ".",
        ],
    )
