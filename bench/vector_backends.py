"""`python -m bench.vector_backends`: dense retriever backends side by side, one run.

For each backend (embedded exact scan; Milvus, a real standalone server started here on
free ports; any other factory added to BACKENDS, e.g. the embedded ANN index) on the same
clustered vectors: upsert time for the whole corpus in batches, then Search p50/p99 over
queries near the corpus, recall@10 against the exact ranking, and memory (the RSS the
backend adds to this process, plus the engine's process for Milvus). Backend calls are
timed in-process (no gRPC), so the numbers compare the index engines, not the transport.
Not part of `make bench` yet: run it by hand; it prints one Markdown table.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from retriever_svc.backends import Backend
from retriever_svc.backends.base import Query
from retriever_svc.backends.dense import DenseBackend
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore

MODEL = "bench-384"
BATCH = 1000
TOP_K = 10


def corpus(n: int, dim: int, seed: int = 7) -> np.ndarray:
    """Clustered unit vectors (200 topics, noise around each): closer to embeddings of real
    text than uniform noise, on which every ANN index looks worse than it is."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 200, n)] + 0.6 * rng.standard_normal((n, dim)).astype(
        np.float32
    )
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def rss_kib(pid: int | None = None) -> int:
    path = f"/proc/{pid or 'self'}/status"
    for line in Path(path).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextmanager
def embedded(directory: Path) -> Iterator[tuple[Backend, int | None]]:
    backend = DenseBackend(DocumentStore(directory / "embedded", snapshot_every=1_000_000))
    yield backend, None
    backend.close()


@contextmanager
def milvus(directory: Path, consistency: str = "Session") -> Iterator[tuple[Backend, int | None]]:
    from retriever_svc.backends.milvus import MilvusBackend
    from retriever_svc.backends.milvus_engine import EngineOptions
    from tests.milvus_server import MilvusServer

    with MilvusServer(directory / "milvus") as server:
        options = EngineOptions(
            uri=server.uri,
            user="",
            password="",
            database="default",
            prefix=f"b{uuid.uuid4().hex[:8]}_",
            timeout_s=60,
            hnsw_m=16,
            hnsw_ef_construction=200,
            consistency=consistency,
        )
        backend = MilvusBackend.connect(options, search_ef=128)
        assert server.proc is not None
        yield backend, server.proc.pid
        backend.close()


BACKENDS: dict[str, Callable[[Path], contextmanager]] = {  # type: ignore[type-arg]
    "embedded-exact": embedded,
    "milvus": milvus,
    "milvus-strong": lambda directory: milvus(directory, "Strong"),
}


def run(name: str, vectors: np.ndarray, queries: np.ndarray, truth: list[set[int]]) -> dict:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        before = rss_kib()
        backend, engine_pid = stack.enter_context(BACKENDS[name](Path(tmp)))
        engine_before = rss_kib(engine_pid) if engine_pid else 0
        started = time.perf_counter()
        for start in range(0, len(vectors), BATCH):
            backend.upsert(
                [
                    StoredDocument(f"d{i}", f"document {i}", {}, {MODEL: vectors[i]})
                    for i in range(start, min(start + BATCH, len(vectors)))
                ]
            )
        upsert_s = time.perf_counter() - started
        for q in queries[:20]:  # warm-up: loads, caches
            backend.search(Query("", q, MODEL, TOP_K))
        latencies, recalls = [], []
        for q, expected in zip(queries, truth, strict=True):
            t = time.perf_counter()
            hits = backend.search(Query("", q, MODEL, TOP_K)).hits
            latencies.append((time.perf_counter() - t) * 1000)
            recalls.append(len({int(h.document.id[1:]) for h in hits} & expected) / TOP_K)
        memory = rss_kib() - before + (rss_kib(engine_pid) - engine_before if engine_pid else 0)
        return {
            "backend": name,
            "documents": len(vectors),
            "upsert_s": upsert_s,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "recall@10": float(np.mean(recalls)),
            "memory_kib_per_doc": memory / len(vectors),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    vectors = corpus(args.documents, args.dimension)
    rng = np.random.default_rng(11)
    picks = rng.integers(0, args.documents, args.queries)
    queries = vectors[picks] + 0.3 * rng.standard_normal((args.queries, args.dimension)).astype(
        np.float32
    )
    scores = queries @ vectors.T
    truth = [set(np.argsort(-row)[:TOP_K].tolist()) for row in scores]
    rows = [run(name, vectors, queries, truth) for name in args.backends.split(",")]
    print("| backend | documents | upsert s | p50 ms | p99 ms | recall@10 | KiB/doc |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['documents']} | {r['upsert_s']:.1f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['recall@10']:.3f} | {r['memory_kib_per_doc']:.2f} |"
        )


if __name__ == "__main__":
    main()
