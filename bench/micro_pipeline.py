"""The pipeline's own CPU per query, in one process, without gRPC: resilience against bare.

Every upstream is an in-process stub that answers after a short sleep with real protos, so
what is measured is the Python work of the pipeline and the resilience layer (breakers,
retries, hedging, bulkheads, coalescing, cache) and nothing of gRPC, the network or other
processes: it is steady on a busy machine, where the mesh benchmarks are not. Variants run
alternately, each round reversing the order; the figure is process CPU time per query.

    python -m bench.micro_pipeline                     # bare, resilience, one knob off each
    python -m bench.micro_pipeline --gc-threshold 700  # with Python's default collector
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import sys
import time
from typing import Any

from gateway.config import GatewayConfig
from gateway.pipeline import Pipeline
from gateway.query import QueryInput
from gateway.resilience.deadline import Deadline
from gateway.upstreams import HEALTH_SERVING, Upstreams
from harag.v1 import common_pb2, embedder_pb2, generator_pb2, retriever_pb2
from servicekit.config import load_config

CONCURRENCY = 32
QUERIES = 3200
DOCS = [
    common_pb2.ScoredDocument(document=common_pb2.Document(id=f"d{i}", text="x" * 200), score=0.5)
    for i in range(4)
]
VARIANTS: dict[str, dict[str, str]] = {
    "bare": {"HARAG_BARE": "true"},
    "resilience": {},
    "no hedging": {"HARAG_HEDGE_ENABLED": "false"},
    "no coalescing": {"HARAG_COALESCE_ENABLED": "false"},
    "no cache": {"HARAG_CACHE_TTL_S": "0", "HARAG_STALE_TTL_S": "0"},
    "no breakers": {"HARAG_BREAKER_ENABLED": "false"},
}


class Stub:
    """All three components at once; replies after a sleep, like a fast upstream."""

    async def Embed(self, request: Any, timeout: float) -> Any:  # noqa: ASYNC109
        await asyncio.sleep(0.002)
        embedding = common_pb2.Embedding(values=[0.1] * 384)
        return embedder_pb2.EmbedResponse(embeddings=[embedding], model="m")

    async def Search(self, request: Any, timeout: float) -> Any:  # noqa: ASYNC109
        await asyncio.sleep(0.002)
        return retriever_pb2.SearchResponse(
            documents=DOCS, mode=retriever_pb2.RETRIEVAL_MODE_DENSE, index_size=4
        )

    async def Generate(self, request: Any, timeout: float) -> Any:  # noqa: ASYNC109
        await asyncio.sleep(0.004)
        return generator_pb2.GenerateResponse(text="answer", model="g")


def pipeline(env: dict[str, str]) -> Pipeline:
    cfg = load_config(GatewayConfig, env=env).config
    upstreams = Upstreams.from_config(cfg)
    for upstream in upstreams.all():
        upstream.stub = Stub()
        upstream.health = HEALTH_SERVING
    return Pipeline(upstreams, cfg)


_texts = itertools.count()


async def cpu_us_per_query(p: Pipeline, queries: int) -> float:
    async def worker() -> None:
        for _ in range(queries // CONCURRENCY):
            query = QueryInput(f"question {next(_texts)}", 4, [])
            await p.run(query, Deadline.after(5.0))

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / queries * 1e6


async def measure(rounds: int, queries: int) -> dict[str, list[float]]:
    pipelines = {name: pipeline(env) for name, env in VARIANTS.items()}
    for p in pipelines.values():  # warm-up: windows, caches and allocators settle
        await cpu_us_per_query(p, queries // 4)
    out: dict[str, list[float]] = {name: [] for name in pipelines}
    for round_no in range(rounds):
        order = list(pipelines.items())
        for name, p in order if round_no % 2 == 0 else reversed(order):
            out[name].append(await cpu_us_per_query(p, queries))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_pipeline")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--queries", type=int, default=QUERIES, help="per variant per round")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=GatewayConfig.gc_gen0_threshold,
        help="young-generation threshold, as the gateway sets it (700 = Python's default)",
    )
    args = parser.parse_args(argv)
    gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    results = asyncio.run(measure(args.rounds, args.queries))
    baseline = results["bare"]
    print(f"CPU per query, µs (median of {args.rounds} rounds; gc threshold {args.gc_threshold})")
    for name, values in results.items():
        ratio = statistics.median(v / b for v, b in zip(values, baseline, strict=True))
        print(f"  {name:14s} {statistics.median(values):7.1f}   {ratio:5.2f} x bare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
