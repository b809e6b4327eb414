"""Dense backend: exact cosine ranking, one index per model, filters, deletes, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retriever_svc.backends.base import (
    DimensionMismatch,
    NoQueryEmbedding,
    Query,
    QueryDimensionMismatch,
    UnknownModel,
)
from retriever_svc.backends.dense import DenseBackend
from retriever_svc.filters import Filter
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore


def vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def doc(
    doc_id: str, metadata: dict[str, str] | None = None, **vectors: np.ndarray
) -> StoredDocument:
    return StoredDocument(doc_id, f"text {doc_id}", metadata or {}, dict(vectors))


@pytest.fixture
def backend(tmp_path: Path) -> DenseBackend:
    return DenseBackend(DocumentStore(tmp_path / "dense"))


def search(
    backend: DenseBackend, model: str, query: np.ndarray, top_k: int = 10, *filters: Filter
) -> list[tuple[str, float]]:
    result = backend.search(Query("", query, model, top_k, tuple(filters)))
    return [(h.document.id, round(h.score, 5)) for h in result.hits]


def test_closest_vector_ranks_first_with_cosine_scores(backend: DenseBackend) -> None:
    backend.upsert(
        [
            doc("east", m=vec(1, 0)),
            doc("north", m=vec(0, 5)),  # length must not matter: cosine, not dot product
            doc("north-east", m=vec(3, 3)),
        ]
    )
    assert search(backend, "m", vec(2, 0.2)) == [
        ("east", round(2 / np.hypot(2, 0.2), 5)),
        ("north-east", round((2 + 0.2) / np.hypot(2, 0.2) / np.sqrt(2), 5)),
        ("north", round(0.2 / np.hypot(2, 0.2), 5)),
    ]
    assert search(backend, "m", vec(0, 1), 1) == [("north", 1.0)]


def test_huge_and_tiny_components_still_normalise(backend: DenseBackend) -> None:
    backend.upsert([doc("huge", m=vec(3e30, 4e30)), doc("tiny", m=vec(-1e-40, 0))])
    assert search(backend, "m", vec(3, 4)) == [("huge", 1.0), ("tiny", -0.6)]


def test_each_model_is_searched_in_its_own_space(backend: DenseBackend) -> None:
    # In model "a" doc1 matches the query direction; in model "b" (another dimension) doc2 does.
    backend.upsert(
        [
            doc("doc1", a=vec(1, 0), b=vec(0, 1, 0)),
            doc("doc2", a=vec(0, 1), b=vec(1, 0, 0)),
            doc("only-a", a=vec(1, 0)),
        ]
    )
    assert search(backend, "b", vec(1, 0, 0)) == [("doc2", 1.0), ("doc1", 0.0)]
    assert search(backend, "a", vec(1, 0)) == [("doc1", 1.0), ("only-a", 1.0), ("doc2", 0.0)]
    assert backend.search(Query("", vec(1, 0, 0), "b", 10)).index_size == 2
    assert [(m.model, m.dimension, m.vectors) for m in backend.stats().models] == [
        ("a", 2, 3),
        ("b", 3, 2),
    ]


def test_unknown_model_names_the_models_held(backend: DenseBackend) -> None:
    backend.upsert([doc("d", a=vec(1, 0), b=vec(1, 0, 0))])
    with pytest.raises(UnknownModel) as caught:
        search(backend, "c", vec(1, 0))
    assert caught.value.known == ["a", "b"]
    assert "models held: a, b" in str(caught.value)


def test_query_without_embedding_or_with_wrong_dimension_is_refused(backend: DenseBackend) -> None:
    backend.upsert([doc("d", a=vec(1, 0))])
    with pytest.raises(NoQueryEmbedding):
        backend.search(Query("text only", None, "a", 3))
    with pytest.raises(QueryDimensionMismatch):
        search(backend, "a", vec(1, 0, 0))


def test_upsert_with_a_dimension_other_than_the_models_index_is_refused(
    backend: DenseBackend,
) -> None:
    backend.upsert([doc("d", a=vec(1, 0))])
    with pytest.raises(DimensionMismatch) as caught:
        backend.upsert([doc("ok", a=vec(0, 1)), doc("bad", a=vec(1, 0, 0))])
    [conflict] = caught.value.conflicts
    assert (conflict.document_index, conflict.model, conflict.expected, conflict.got) == (
        1,
        "a",
        2,
        3,
    )
    assert sorted(backend._store.documents) == ["d"]  # the whole batch was refused

    # A new model takes the dimension of its first vector, also within one batch.
    with pytest.raises(DimensionMismatch) as caught:
        backend.upsert([doc("x", z=vec(1, 0)), doc("y", z=vec(1, 0, 0))])
    assert caught.value.conflicts[0].document_index == 1


def test_filters_are_an_and_of_key_in_values(backend: DenseBackend) -> None:
    backend.upsert(
        [
            doc("en-x", {"lang": "en", "topic": "x"}, m=vec(1, 0)),
            doc("fr-x", {"lang": "fr", "topic": "x"}, m=vec(1, 0.1)),
            doc("de-x", {"lang": "de", "topic": "x"}, m=vec(1, 0.2)),
            doc("en-y", {"lang": "en", "topic": "y"}, m=vec(1, 0.3)),
            doc("no-meta", m=vec(1, 0)),
        ]
    )
    langs = Filter("lang", frozenset({"en", "fr"}))
    topic = Filter("topic", frozenset({"x"}))
    assert [i for i, _ in search(backend, "m", vec(1, 0), 10, langs)] == ["en-x", "fr-x", "en-y"]
    assert [i for i, _ in search(backend, "m", vec(1, 0), 10, langs, topic)] == ["en-x", "fr-x"]
    assert search(backend, "m", vec(1, 0), 10, Filter("lang", frozenset({"es"}))) == []


def test_delete_removes_documents_and_empty_model_indexes(backend: DenseBackend) -> None:
    backend.upsert(
        [doc("a", m=vec(1, 0), solo=vec(1)), doc("b", m=vec(0, 1)), doc("c", m=vec(1, 1))]
    )
    assert backend.delete(["a", "unknown"]) == 1
    assert [i for i, _ in search(backend, "m", vec(1, 0))] == ["c", "b"]
    with pytest.raises(UnknownModel):
        search(backend, "solo", vec(1))
    assert backend.stats().documents == 2


def test_replacing_a_document_replaces_its_vectors(backend: DenseBackend) -> None:
    backend.upsert([doc("a", m=vec(1, 0), other=vec(1, 0)), doc("b", m=vec(0.9, 0.1))])
    backend.upsert([doc("a", m=vec(0, 1))])  # no "other" vector any more
    assert [i for i, _ in search(backend, "m", vec(1, 0))] == ["b", "a"]
    with pytest.raises(UnknownModel):
        search(backend, "other", vec(1, 0))
    assert backend._store.documents["a"].text == "text a"


def test_matches_brute_force_after_random_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    backend = DenseBackend(DocumentStore(tmp_path, snapshot_every=50))
    vectors: dict[str, np.ndarray] = {}
    groups: dict[str, str] = {}
    for step in range(12):
        batch = []
        for _ in range(60):
            doc_id = f"d{rng.integers(400)}"
            vectors[doc_id] = rng.standard_normal(16).astype(np.float32)
            groups[doc_id] = str(rng.integers(3))
            batch.append(doc(doc_id, {"g": groups[doc_id]}, m=vectors[doc_id]))
        backend.upsert(batch)
        doomed = [f"d{i}" for i in rng.integers(400, size=15)]
        backend.delete(doomed)
        for doc_id in doomed:
            vectors.pop(doc_id, None)
        if step == 6:  # the reopened index must rank exactly like the live one
            backend.close()
            backend = DenseBackend(DocumentStore(tmp_path, snapshot_every=50))

    query = rng.standard_normal(16).astype(np.float32)
    allowed = {i for i, g in groups.items() if g in {"0", "2"} and i in vectors}

    def brute(ids: set[str]) -> list[str]:
        score = {i: float(vectors[i] @ query / np.linalg.norm(vectors[i])) for i in ids}
        return sorted(ids, key=lambda i: -score[i])[:25]

    assert [i for i, _ in search(backend, "m", query, 25)] == brute(set(vectors))
    filtered = search(backend, "m", query, 25, Filter("g", frozenset({"0", "2"})))
    assert [i for i, _ in filtered] == brute(allowed)
    assert backend.stats().documents == len(vectors)
