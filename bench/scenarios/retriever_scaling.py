"""Scenario 7: retriever Search latency and memory at 1k, 10k and 100k documents.

Both retriever processes (dense exact cosine search, and lexical BM25) are started alone
and filled through their own Upsert RPC with synthetic documents: ~60 words of text drawn
from the sample corpus's vocabulary, and one random unit vector per embedding model (the
dense index's cost does not depend on what the vectors mean). Every document carries both
models' vectors, as the gateway's ingestion sends them. Search latency is measured
sequentially (one query in flight) over gRPC; memory is the process's resident set growth
per document over the empty process.
"""

from __future__ import annotations

import random
import re
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bench.mesh import Tail
from bench.report import ScenarioResult, markdown_table
from bench.stats import percentile
from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc
from harag_cli.corpus import SAMPLE_CORPUS
from harag_cli.localports import free_port
from harag_cli.supervisor import Supervisor, mesh_specs

SIZES = (1_000, 10_000, 100_000)
MODELS = {"hash-ngram-384": 384, "hash-word-128": 128}
QUERY_MODEL = "hash-ngram-384"
BATCH = 1000
WORDS_PER_DOC = 60
COLUMNS = {
    "documents": "documents",
    "retriever": "retriever",
    "p50_ms": "Search p50 ms",
    "p99_ms": "Search p99 ms",
    "rss_mb": "RSS MB",
    "bytes_per_doc": "memory / document",
    "load_s": "Upsert time s",
}


def vocabulary() -> list[str]:
    words = set()
    for path in SAMPLE_CORPUS.glob("*.md"):
        words.update(w.lower() for w in re.findall(r"[A-Za-z]{3,}", path.read_text()))
    return sorted(words)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def documents(start: int, count: int, words: list[str], rng: np.random.Generator) -> list:
    picker = random.Random(start)
    out = []
    vectors = {m: rng.standard_normal((count, d)).astype(np.float32) for m, d in MODELS.items()}
    for m in vectors:
        vectors[m] /= np.linalg.norm(vectors[m], axis=1, keepdims=True)
    for i in range(count):
        doc = retriever_pb2.IndexedDocument(
            document=common_pb2.Document(
                id=f"synthetic-{start + i}",
                text=" ".join(picker.choices(words, k=WORDS_PER_DOC)),
                metadata={"source": "synthetic"},
            )
        )
        for model, matrix in vectors.items():
            doc.embeddings[model].values.extend(matrix[i].tolist())
        out.append(doc)
    return out


async def _search_latencies(
    stub: retriever_pb2_grpc.RetrieverServiceStub, dense: bool, words: list[str], n: int
) -> list[float]:
    rng = np.random.default_rng(7)
    picker = random.Random(7)
    latencies = []
    for i in range(n + 5):  # the first few warm up (the lexical index builds lazily)
        request = retriever_pb2.SearchRequest(
            query_text=" ".join(picker.choices(words, k=8)), top_k=4
        )
        if dense:
            vector = rng.standard_normal(MODELS[QUERY_MODEL]).astype(np.float32)
            request.query_embedding.values.extend((vector / np.linalg.norm(vector)).tolist())
            request.model = QUERY_MODEL
        started = time.perf_counter()
        await stub.Search(request, timeout=60)
        if i >= 5:
            latencies.append((time.perf_counter() - started) * 1000)
    return sorted(latencies)


async def run(sizes: tuple[int, ...] = SIZES, searches: int = 200) -> ScenarioResult:
    words = vocabulary()
    rng = np.random.default_rng(42)
    rows = []
    with tempfile.TemporaryDirectory(prefix="harag-bench-retriever-") as tmp:
        ports = {"retriever-primary": free_port(), "retriever-fallback": free_port()}
        specs = [
            s
            for s in mesh_specs(
                ports=ports,
                data_dir=Path(tmp),
                env={"HARAG_LOG_LEVEL": "WARNING", "HARAG_METRICS_PORT": "0"},
            )
            if s.name in ports
        ]
        supervisor = Supervisor(specs, sink=Tail())
        await supervisor.start()
        channels = {s.name: grpc.aio.insecure_channel(s.address) for s in specs}
        try:
            await supervisor.wait_serving(timeout_s=60)
            stubs = {n: retriever_pb2_grpc.RetrieverServiceStub(c) for n, c in channels.items()}
            empty = {n: rss_bytes(supervisor.procs[n].pid) for n in stubs}
            loaded = 0
            for size in sizes:
                batches = [
                    documents(start, min(BATCH, size - start), words, rng)
                    for start in range(loaded, size, BATCH)
                ]
                for name, stub in stubs.items():
                    started = time.perf_counter()
                    for batch in batches:
                        await stub.Upsert(retriever_pb2.UpsertRequest(documents=batch), timeout=120)
                    load_s = time.perf_counter() - started
                    dense = name == "retriever-primary"
                    latencies = await _search_latencies(stub, dense, words, searches)
                    rss = rss_bytes(supervisor.procs[name].pid)
                    rows.append(
                        {
                            "documents": size,
                            "retriever": "dense (primary)" if dense else "lexical BM25 (fallback)",
                            "p50_ms": percentile(latencies, 50),
                            "p99_ms": percentile(latencies, 99),
                            "rss_mb": rss / 2**20,
                            "bytes_per_doc": f"{(rss - empty[name]) / size / 1024:.1f} KiB",
                            "load_s": load_s,
                        }
                    )
                loaded = size
        finally:
            for channel in channels.values():
                await channel.close()
            await supervisor.stop()
    return ScenarioResult(
        name="retriever_scaling",
        title="7. Retriever scaling",
        table=markdown_table(rows, COLUMNS),
        data={"rows": rows},
        notes=[
            f"Synthetic documents of {WORDS_PER_DOC} words, each with a "
            + " and a ".join(f"{d}-d" for d in MODELS.values())
            + f" float32 vector; top_k 4; {searches} sequential searches per point. Upsert "
            f"time is for the documents added at that step, {BATCH} per call, each call "
            "fsync'ed to the write-ahead log.",
            "Memory per document is the resident set growth over the empty process divided by "
            "the documents held: text, metadata, the vectors (kept in the store and, for "
            "dense, again in the per-model matrix) and the index structures.",
        ],
    )
