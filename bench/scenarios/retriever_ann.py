"""Scenario 11: the HNSW retriever beside the exact scan, on the same documents in one run.

Two primary retriever processes are started alone, one with `dense_index=exact`, one with
`dense_index=auto` (HNSW past ann_exact_below vectors), and both are filled through their
Upsert RPC with the same documents: 384-d vectors with the structure of text embeddings
(a Gaussian mixture: each document near one of 2,000 topic centres, pulled towards a second
topic, plus noise; unit length) and short text with a `bucket` metadata value that 1 % of
the documents share. The embedder's models are too slow to embed 300,000 texts here, and
uniformly random vectors would flatter neither index (every neighbour is equally far).

Measured per process, sequentially over gRPC (one query in flight): Search p50/p99 with
top_k 10, recall@10 of the HNSW process against the exact one's answers to the same
queries, the same with the 1 % filter, upsert throughput, resident memory growth per
document, the index's own memory (GetStats), and the time from start to SERVING after a
graceful stop (the graph is saved on the way out and loaded, not rebuilt).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bench.report import ScenarioResult, Target, markdown_table
from bench.stats import percentile
from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc
from harag_cli.localports import free_port
from servicekit.healthcheck import check

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = 300_000
QUICK_DOCUMENTS = 20_000
DIMENSION = 384
TOPICS = 2_000
MODEL = "bench-384"
BATCH = 1_000
SEARCHES = 300
FILTER_BUCKETS = 100  # bucket = i % 100: a filter on one bucket keeps 1 %
INDEXES = {"exact": "exact", "hnsw": "auto"}
COLUMNS = {
    "index": "index",
    "p50_ms": "Search p50 ms",
    "p99_ms": "Search p99 ms",
    "recall": "recall@10",
    "filtered_p50_ms": "1 % filter p50 ms",
    "filtered_p99_ms": "1 % filter p99 ms",
    "filtered_recall": "1 % filter recall@10",
    "upserts_per_s": "upserts / s",
    "bytes_per_doc": "RSS / document",
    "index_bytes_per_doc": "index / document",
    "restart_s": "restart s",
}


def structured(count: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Unit vectors near a topic centre, pulled towards a second topic (text-like)."""
    own = centres[rng.integers(0, len(centres), count)]
    other = centres[rng.integers(0, len(centres), count)]
    noise = rng.standard_normal((count, centres.shape[1]), dtype=np.float32)
    vectors = own + 0.5 * other + 0.9 * noise
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def batch(start: int, vectors: np.ndarray) -> retriever_pb2.UpsertRequest:
    return retriever_pb2.UpsertRequest(
        documents=[
            retriever_pb2.IndexedDocument(
                document=common_pb2.Document(
                    id=f"doc-{start + i}",
                    text=f"synthetic document {start + i} about topic {(start + i) % 997}",
                    metadata={"bucket": str((start + i) % FILTER_BUCKETS)},
                ),
                embeddings={MODEL: common_pb2.Embedding(values=vector.tolist())},
            )
            for i, vector in enumerate(vectors)
        ]
    )


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Retriever:
    """One primary retriever process with its own data directory and index kind."""

    def __init__(self, data_dir: Path, dense_index: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HARAG_")}
        self.env |= {
            "HARAG_PORT": str(self.port),
            "HARAG_DATA_DIR": str(data_dir),
            "HARAG_DENSE_INDEX": dense_index,
            "HARAG_LOG_LEVEL": "WARNING",
            "HARAG_METRICS_PORT": "0",
            "HARAG_MAX_UPSERT_BATCH": str(BATCH),
            "OPENBLAS_NUM_THREADS": "1",
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> float:
        """Starts the process; returns the seconds until it reports SERVING."""
        started = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "retriever_svc", "--impl", "primary", cwd=REPO, env=self.env
        )
        while await asyncio.to_thread(check, self.address, "", 0.5) != "SERVING":
            if self.proc.returncode is not None:
                raise RuntimeError(f"retriever exited with {self.proc.returncode}")
            await asyncio.sleep(0.05)
        return time.perf_counter() - started

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


async def _searches(
    stub: retriever_pb2_grpc.RetrieverServiceStub, queries: np.ndarray, bucket: str | None
) -> tuple[list[float], list[list[str]]]:
    latencies, answers = [], []
    for i, query in enumerate(queries):
        request = retriever_pb2.SearchRequest(
            query_text="q",
            query_embedding=common_pb2.Embedding(values=query.tolist()),
            model=MODEL,
            top_k=10,
        )
        if bucket is not None:
            request.filters.add(key="bucket", values=[bucket])
        started = time.perf_counter()
        reply = await stub.Search(request, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        if i >= 10:  # warm-up
            latencies.append(elapsed)
        answers.append([d.document.id for d in reply.documents])
    return sorted(latencies), answers


def _recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / max(len(t), 1) for f, t in zip(found, truth, strict=True)])
    )


async def run(documents: int = DOCUMENTS, searches: int = SEARCHES) -> ScenarioResult:
    rng = np.random.default_rng(2024)
    centres = rng.standard_normal((TOPICS, DIMENSION), dtype=np.float32)
    queries = structured(searches + 10, np.random.default_rng(7), centres)
    rows: dict[str, dict[str, object]] = {}
    answers: dict[str, dict[str, list[list[str]]]] = {}
    with tempfile.TemporaryDirectory(prefix="harag-bench-ann-") as tmp:
        procs = {name: Retriever(Path(tmp, name), kind) for name, kind in INDEXES.items()}
        try:
            for proc in procs.values():
                await proc.start()
            empty = {name: rss_bytes(p.pid) for name, p in procs.items()}
            channels = {name: grpc.aio.insecure_channel(p.address) for name, p in procs.items()}
            stubs = {n: retriever_pb2_grpc.RetrieverServiceStub(c) for n, c in channels.items()}
            load_s = dict.fromkeys(procs, 0.0)
            for start in range(0, documents, BATCH):
                request = batch(start, structured(min(BATCH, documents - start), rng, centres))
                for name, stub in stubs.items():
                    began = time.perf_counter()
                    await stub.Upsert(request, timeout=300)
                    load_s[name] += time.perf_counter() - began
            for name, stub in stubs.items():
                latencies, found = await _searches(stub, queries, None)
                filtered, found_filtered = await _searches(stub, queries, "7")
                stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=30)
                rss = rss_bytes(procs[name].pid)
                index_bytes = stats.models[0].memory_bytes
                answers[name] = {"all": found, "filtered": found_filtered}
                rows[name] = {
                    "index": stats.models[0].index,
                    "p50_ms": percentile(latencies, 50),
                    "p99_ms": percentile(latencies, 99),
                    "filtered_p50_ms": percentile(filtered, 50),
                    "filtered_p99_ms": percentile(filtered, 99),
                    "upserts_per_s": documents / load_s[name],
                    "rss_bytes_per_doc": (rss - empty[name]) / documents,
                    "bytes_per_doc": f"{(rss - empty[name]) / documents / 1024:.2f} KiB",
                    "index_bytes": index_bytes,
                    "index_bytes_per_doc": f"{index_bytes / documents / 1024:.2f} KiB",
                }
            for channel in channels.values():
                await channel.close()
            for name, proc in procs.items():
                await proc.stop()
                rows[name]["restart_s"] = await proc.start()
                await proc.stop()
        finally:
            for proc in procs.values():
                await proc.stop()
    for name in rows:
        rows[name]["recall"] = _recall(answers[name]["all"], answers["exact"]["all"])
        rows[name]["filtered_recall"] = _recall(
            answers[name]["filtered"], answers["exact"]["filtered"]
        )
    ann = rows["hnsw"]
    targets = [
        Target(
            "HNSW Search p50 ms at 300k", float(ann["p50_ms"]), "<= 2", float(ann["p50_ms"]) <= 2
        ),  # type: ignore[arg-type]
        Target("HNSW recall@10", float(ann["recall"]), ">= 0.95", float(ann["recall"]) >= 0.95),  # type: ignore[arg-type]
        Target(
            "HNSW 1 % filter p50 ms",
            float(ann["filtered_p50_ms"]),  # type: ignore[arg-type]
            "<= 3",
            float(ann["filtered_p50_ms"]) <= 3,  # type: ignore[arg-type]
        ),
        Target(
            "HNSW 1 % filter recall@10",
            float(ann["filtered_recall"]),  # type: ignore[arg-type]
            ">= 0.95",
            float(ann["filtered_recall"]) >= 0.95,  # type: ignore[arg-type]
        ),
        Target(
            "HNSW memory KiB / document",
            float(ann["rss_bytes_per_doc"]) / 1024,  # type: ignore[arg-type]
            "<= 2.5",
            float(ann["rss_bytes_per_doc"]) / 1024 <= 2.5,  # type: ignore[arg-type]
        ),
    ]
    return ScenarioResult(
        name="retriever_ann",
        title="11. Retriever: HNSW index beside the exact scan",
        table=markdown_table(list(rows.values()), COLUMNS),
        data={"documents": documents, "dimension": DIMENSION, "rows": rows},
        targets=targets if documents == DOCUMENTS else [],
        notes=[
            f"{documents:,} documents of {DIMENSION} d (Gaussian-mixture vectors over "
            f"{TOPICS:,} topics, see the scenario's doc), both processes fed the same "
            f"{BATCH:,}-document Upserts; {searches} sequential top-10 searches per row, over "
            "gRPC. Recall is against the exact process's answers to the same queries.",
            "RSS / document is the resident set growth over the empty process divided by the "
            "documents (text, metadata, ids and the one copy of each vector); index / document "
            "is what GetStats reports for the model index alone. Restart is start to SERVING "
            "after a graceful stop (the HNSW graph saved on the way out, loaded and reconciled "
            "with the store).",
        ],
    )
