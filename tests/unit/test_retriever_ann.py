"""The dense backend on HNSW graphs: recall against exact search on structured vectors, with
and without filters; updates and deletes; vectors kept once; the graph saved beside the store
and reconciled with it after a crash; auto moving a grown model from exact to the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retriever_svc.backends.base import Query
from retriever_svc.backends.dense import DenseBackend, DenseSettings
from retriever_svc.backends.hnsw import HnswIndex, HnswParams
from retriever_svc.backends.persistence import IndexFiles
from retriever_svc.backends.planner import PlannerSettings
from retriever_svc.backends.vectors import IndexedVectors
from retriever_svc.filters import Filter
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore

DIM = 48
N = 3_000


def clustered(count: int, seed: int) -> np.ndarray:
    centres = np.random.default_rng(77).standard_normal((40, DIM))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, 40, count)] + 0.7 * rng.standard_normal((count, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


VECTORS = clustered(N, 1)
QUERIES = clustered(40, 2)


def settings(
    kind: str = "hnsw", exact_below: int = 20_000, vector_type: str = "f16"
) -> DenseSettings:
    return DenseSettings(
        PlannerSettings(kind, exact_below, filter_exact_max=100, expansion_search=64),  # type: ignore[arg-type]
        HnswParams(16, 128, 64, vector_type),
    )


def open_dense(
    path: Path, dense: DenseSettings | None = None, snapshot_every: int = 100_000
) -> DenseBackend:
    return DenseBackend(DocumentStore(path, snapshot_every), dense or settings(), IndexFiles(path))


def crash(backend: DenseBackend) -> None:
    """What SIGKILL leaves: the store's files as written, no graph saved on the way out."""
    backend._store.close()


def documents(rows: range, vectors: np.ndarray = VECTORS) -> list[StoredDocument]:
    return [
        StoredDocument(
            f"d{i}", f"text {i}", {"half": str(i % 2), "shard": str(i % 50)}, {"m": vectors[i]}
        )
        for i in rows
    ]


def load(backend: DenseBackend, rows: range = range(N)) -> None:
    for start in range(rows.start, rows.stop, 1000):
        backend.upsert(documents(range(start, min(start + 1000, rows.stop))))


def ranked(backend: DenseBackend, query: np.ndarray, top_k: int = 10, **filters: str) -> list[str]:
    flts = tuple(Filter(k, frozenset([v])) for k, v in filters.items())
    return [h.document.id for h in backend.search(Query("", query, "m", top_k, flts)).hits]


def truth(query: np.ndarray, rows: np.ndarray | None = None, top_k: int = 10) -> list[str]:
    rows = np.arange(N) if rows is None else rows
    scores = VECTORS[rows] @ query
    return [f"d{rows[i]}" for i in np.argsort(-scores)[:top_k]]


def recall(backend: DenseBackend, rows: np.ndarray | None = None, **filters: str) -> float:
    hits = [len(set(ranked(backend, q, **filters)) & set(truth(q, rows))) / 10 for q in QUERIES]
    return float(np.mean(hits))


def test_recall_against_exact_with_broad_and_selective_filters(tmp_path: Path) -> None:
    backend = open_dense(tmp_path)
    load(backend)
    assert backend.stats().models[0].index == "hnsw"
    assert recall(backend) >= 0.95
    # half the documents: the graph over-fetches; 60 of 3000: the matches are scanned
    assert recall(backend, np.arange(1, N, 2), half="1") >= 0.95
    assert recall(backend, np.arange(7, N, 50), shard="7") == 1.0
    found = ranked(backend, QUERIES[0], 10, half="0")
    assert len(found) == 10 and all(int(i[1:]) % 2 == 0 for i in found)


def test_updates_and_deletes_are_seen_at_once(tmp_path: Path) -> None:
    backend = open_dense(tmp_path)
    load(backend)
    backend.delete([f"d{i}" for i in range(0, N, 3)])
    for query in QUERIES[:10]:
        assert all(int(i[1:]) % 3 != 0 for i in ranked(backend, query, 30))
    moved = clustered(1, 99)[0]
    backend.upsert(documents(range(1, 2), np.stack([moved, moved])))
    assert ranked(backend, moved, 1) == ["d1"]
    assert "d1" not in ranked(backend, VECTORS[1], 10)
    assert backend.stats().models[0].vectors == N - N // 3


def test_vectors_are_kept_once_and_read_back_for_compaction(tmp_path: Path) -> None:
    backend = open_dense(tmp_path)
    load(backend, range(200))
    stored = backend._store.documents["d5"]
    assert isinstance(stored.embeddings, IndexedVectors) and list(stored.embeddings) == ["m"]
    assert np.allclose(stored.embeddings["m"], VECTORS[5], atol=2e-3)
    backend._store.compact()  # the snapshot's vectors come from the graph
    crash(backend)
    exact = DenseBackend(DocumentStore(tmp_path), settings("exact"))
    assert ranked(exact, VECTORS[5], 1) == ["d5"]
    assert exact.stats().models[0].index == "exact"


def test_restart_loads_the_saved_graph_without_rebuilding(tmp_path: Path) -> None:
    backend = open_dense(tmp_path)
    load(backend)
    before = [ranked(backend, q) for q in QUERIES]
    backend.close()  # saves the graph
    assert list((tmp_path / "ann").glob("*.usearch"))
    again = open_dense(tmp_path)
    assert again.reconciled == {"m": (0, 0)}
    assert [ranked(again, q) for q in QUERIES] == before


def test_after_a_crash_the_graph_is_reconciled_with_the_store(tmp_path: Path) -> None:
    backend = open_dense(tmp_path, snapshot_every=3)
    load(backend)  # three upserts: the store compacts and the graph is saved beside it
    assert backend._store.compactions == 1
    moved = clustered(1, 98)[0]
    # two writes, in the log only (the next compaction would come at the third)
    backend.upsert(
        [
            StoredDocument("d10", "t", {}, {"m": moved}),
            StoredDocument("new", "t", {}, {"m": VECTORS[30]}),
        ]
    )
    backend.delete(["d20", "d21"])
    crash(backend)
    again = open_dense(tmp_path)
    added, removed = again.reconciled["m"]
    assert (added, removed) == (2, 2)  # d10 moved and "new" added; d20, d21 deleted
    assert ranked(again, moved, 1) == ["d10"]
    assert not {"d20", "d21"} & set(ranked(again, VECTORS[20], 30))
    assert set(ranked(again, VECTORS[30], 2)) == {"d30", "new"}
    assert again.stats().models[0].vectors == N - 1


def test_a_torn_saved_graph_is_rebuilt(tmp_path: Path) -> None:
    backend = open_dense(tmp_path)
    load(backend, range(500))
    backend.close()
    (saved,) = (tmp_path / "ann").glob("*.usearch")
    saved.write_bytes(saved.read_bytes()[:1000])
    again = open_dense(tmp_path)
    assert again.reconciled == {"m": (500, 0)}  # nothing usable: every vector added afresh
    assert ranked(again, VECTORS[7], 1) == ["d7"]


def test_auto_starts_exact_and_moves_a_grown_model_to_the_graph(tmp_path: Path) -> None:
    backend = open_dense(tmp_path, settings("auto", exact_below=1_000))
    load(backend, range(999))
    assert backend.stats().models[0].index == "exact"
    assert ranked(backend, VECTORS[3], 1) == ["d3"]
    load(backend, range(999, 1_500))
    assert backend.stats().models[0].index == "hnsw"
    assert ranked(backend, VECTORS[3], 1) == ["d3"]
    assert ranked(backend, VECTORS[1_200], 1) == ["d1200"]


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_memory_is_reported_per_index(tmp_path: Path, kind: str) -> None:
    backend = open_dense(tmp_path, settings(kind))
    load(backend)
    stats = backend.stats()
    model = stats.models[0]
    assert model.index == kind and model.vectors == N
    # at least the vectors themselves (f16 in the graph); at most twice them plus links and
    # usearch's fixed arenas (16 MiB)
    width = 2 if kind == "hnsw" else 4
    assert N * DIM * width <= model.memory_bytes <= 20 * 2**20 + N * (DIM * 4 * 2 + 1024)
    assert stats.memory_bytes > model.memory_bytes


def test_hnsw_index_put_replaces_and_remove_frees_a_key() -> None:
    index = HnswIndex(DIM, HnswParams(vector_type="f32"))
    index.put_many(["a", "b"], VECTORS[:2])
    index.put("a", VECTORS[2])
    assert len(index) == 2 and np.allclose(index.vector("a"), VECTORS[2])
    assert index.search(VECTORS[2], 1, 16)[0][0] == "a"
    index.remove("a")
    assert "a" not in index and [i for i, _ in index.search(VECTORS[2], 5, 16)] == ["b"]
