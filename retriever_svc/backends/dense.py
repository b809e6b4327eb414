"""Primary retriever: cosine search, one index per embedding model id.

Vectors from different models live in different spaces, so each model id has its own
index; a search touches only the index of the query's model. An index is either an exact
`ModelIndex` (a contiguous float32 matrix, rows L2-normalised on insert, cosine similarity
as one matrix-vector product) or an approximate `HnswIndex` (hnsw.py). Which one, and how a
search uses it, follow the `dense_index` setting and the query planner (planner.py):
exact keeps every model exact; hnsw uses the graph; auto starts exact and moves a model to
the graph once it holds `ann_exact_below` vectors.

Either index is the only in-memory copy of the vectors (vectors.py). HNSW indexes are saved
beside the store (ann/) when the store compacts and on close, and reconciled with the store
at start, so a restart reads the graph instead of rebuilding it (persistence.py).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from retriever_svc.backends.base import (
    DENSE,
    DimensionConflict,
    DimensionMismatch,
    Hit,
    ModelStats,
    NoQueryEmbedding,
    Query,
    QueryDimensionMismatch,
    SearchResult,
    StoreBackedBackend,
    TooManyModels,
    UnknownModel,
    top_positions,
)
from retriever_svc.backends.hnsw import BATCH_ROWS, HnswIndex, HnswParams
from retriever_svc.backends.persistence import IndexFiles
from retriever_svc.backends.planner import PlannerSettings, Strategy, grow, plan
from retriever_svc.backends.vectors import IndexedVectors, VectorIndex
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore

log = logging.getLogger("harag.retriever.dense")

INITIAL_ROWS = 64


@dataclass(frozen=True)
class DenseSettings:
    """How the dense backend indexes and searches (the retriever's dense_index, ann_* settings)."""

    planner: PlannerSettings = field(default_factory=lambda: PlannerSettings(kind="exact"))
    hnsw: HnswParams = field(default_factory=HnswParams)


def normalised(vector: np.ndarray) -> np.ndarray:
    # float64 so the norm of any finite float32 vector is finite (1e30**2 overflows float32).
    wide = vector.astype(np.float64)
    norm = float(np.linalg.norm(wide))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError("vector must be finite and non-zero")
    return (wide / norm).astype(np.float32)


class ModelIndex:
    """Normalised vectors of one model: rows [0, len) of `matrix`, row i belongs to ids[i]."""

    kind = "exact"

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.matrix = np.empty((INITIAL_ROWS, dimension), dtype=np.float32)
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self.row_of

    def vector(self, doc_id: str) -> np.ndarray:
        return self.matrix[self.row_of[doc_id]].copy()

    def memory_bytes(self) -> int:
        return int(self.matrix.nbytes) + sys.getsizeof(self.ids) + sys.getsizeof(self.row_of)

    def put(self, doc_id: str, vector: np.ndarray) -> None:
        row = self.row_of.get(doc_id)
        if row is None:
            row = len(self.ids)
            if row == self.matrix.shape[0]:
                # Doubling keeps inserts amortised O(dimension) while rows stay contiguous.
                grown = np.empty((row * 2, self.dimension), dtype=np.float32)
                grown[:row] = self.matrix[:row]
                self.matrix = grown
            self.ids.append(doc_id)
            self.row_of[doc_id] = row
        self.matrix[row] = normalised(vector)

    def remove(self, doc_id: str) -> None:
        row = self.row_of.pop(doc_id)
        last = len(self.ids) - 1
        if row != last:  # move the last row into the hole so rows stay contiguous
            moved = self.ids[last]
            self.matrix[row] = self.matrix[last]
            self.ids[row] = moved
            self.row_of[moved] = row
        self.ids.pop()
        if INITIAL_ROWS < self.matrix.shape[0] and len(self.ids) < self.matrix.shape[0] // 4:
            self.matrix = self.matrix[: self.matrix.shape[0] // 2].copy()

    def similarities(self, query: np.ndarray) -> np.ndarray:
        return self.matrix[: len(self.ids)] @ query


class DenseBackend(StoreBackedBackend):
    mode = DENSE

    def __init__(
        self,
        store: DocumentStore,
        settings: DenseSettings | None = None,
        persisted: IndexFiles | None = None,
        max_models: int = 8,
    ) -> None:
        self._settings = settings or DenseSettings()
        self._models: dict[str, VectorIndex] = {}
        self._persisted = persisted
        self._saved_compactions = store.compactions
        # per graph model at load: (vectors added, vectors removed) to match the store
        self.reconciled: dict[str, tuple[int, int]] = {}
        # New model ids a write may introduce stop here (a stored index past it still loads).
        self.max_models = max_models
        super().__init__(store)

    # --- index maintenance ------------------------------------------------------------------

    def _index_load(self, documents: Iterable[StoredDocument]) -> None:
        """Builds every model index from the loaded store, starting from saved HNSW indexes."""
        saved: dict[str, HnswIndex] = {}
        if self._persisted and self._settings.planner.kind != "exact":
            saved = self._persisted.load(self._settings.hnsw)
        by_model: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        docs = list(documents)
        for doc in docs:
            for model, vector in doc.embeddings.items():
                ids, vectors = by_model.setdefault(model, ([], []))
                ids.append(doc.id)
                vectors.append(vector)
        for model, (ids, vectors) in by_model.items():
            dimension = vectors[0].shape[0]
            index = saved.pop(model, None)
            if index is not None and index.dimension != dimension:
                index = None
            if index is None and self._wants_graph(len(ids)):
                index = HnswIndex(dimension, self._settings.hnsw)
            if index is None:
                exact = self._models[model] = ModelIndex(dimension)
                for doc_id, vector in zip(ids, vectors, strict=True):
                    exact.put(doc_id, vector)
            else:
                self._models[model] = index
                self.reconciled[model] = reconcile(index, ids, vectors)
            vectors.clear()
        for doc in docs:
            self._view(doc)
        if self._persisted:  # models no longer stored: their saved graphs go
            self._persisted.forget(list(saved))

    def _index_add(self, doc: StoredDocument) -> None:
        for model, vector in doc.embeddings.items():
            index = self._models.get(model)
            if index is None:
                index = self._models[model] = self._new_index(vector.shape[0])
            if isinstance(index, HnswIndex):
                index.put(doc.id, normalised(vector))
            else:
                assert isinstance(index, ModelIndex)
                index.put(doc.id, vector)
                if self._wants_graph(len(index)):
                    self._models[model] = to_graph(index, self._settings.hnsw)
        self._view(doc)

    def _own(self, documents: Sequence[StoredDocument]) -> Sequence[StoredDocument]:
        # Indexing swaps a stored document's vectors for a view (_view): copies keep the
        # caller's objects, and their vectors, as they were.
        return [dataclasses.replace(doc) for doc in documents]

    def _view(self, doc: StoredDocument) -> None:
        # The index now holds the vectors; the document keeps only which models it has.
        doc.embeddings = IndexedVectors(self._models, doc.id, tuple(doc.embeddings))  # type: ignore[assignment]

    def _new_index(self, dimension: int) -> VectorIndex:
        if self._wants_graph(0):
            return HnswIndex(dimension, self._settings.hnsw)
        return ModelIndex(dimension)

    def _wants_graph(self, size: int) -> bool:
        kind = self._settings.planner.kind
        return kind == "hnsw" or (kind == "auto" and size >= self._settings.planner.exact_below)

    def _check(self, documents: Sequence[StoredDocument]) -> None:
        dimensions = {model: index.dimension for model, index in self._models.items()}
        conflicts = []
        for position, doc in enumerate(documents):
            for model, vector in doc.embeddings.items():
                if model not in dimensions and len(dimensions) >= self.max_models:
                    raise TooManyModels(position, model, self.max_models)
                expected = dimensions.setdefault(model, vector.shape[0])
                if vector.shape[0] != expected:
                    conflicts.append(DimensionConflict(position, model, expected, vector.shape[0]))
        if conflicts:
            raise DimensionMismatch(conflicts)

    def _dimensions(self) -> dict[str, int]:
        return {model: index.dimension for model, index in self._models.items()}

    def _check_dimensions(
        self, chunks: Sequence[StoredDocument], dimensions: dict[str, int]
    ) -> str:
        introduced: dict[str, int] = {}
        for chunk in chunks:
            for model, vector in chunk.embeddings.items():
                if (
                    model not in dimensions
                    and model not in introduced
                    and len(dimensions) + len(introduced) >= self.max_models
                ):
                    return (
                        f"chunk {chunk.id!r}: model {model!r} would be a new vector index; "
                        f"this retriever holds at most {self.max_models} models "
                        "(setting max_models)"
                    )
                expected = dimensions.get(model, introduced.setdefault(model, vector.shape[0]))
                if vector.shape[0] != expected:
                    return (
                        f"chunk {chunk.id!r}: model {model!r} embedding has "
                        f"{vector.shape[0]} dimensions; its index has {expected}"
                    )
        dimensions.update(introduced)
        return ""

    def _index_remove(self, doc: StoredDocument) -> None:
        self._drop_vectors(doc.id, doc.embeddings)

    def _index_replace(self, old: StoredDocument | None, new: StoredDocument) -> None:
        if old is not None:
            self._drop_vectors(old.id, [m for m in old.embeddings if m not in new.embeddings])
        self._index_add(new)  # overwrites vectors in place for models both versions have

    def _drop_vectors(self, doc_id: str, models: Iterable[str]) -> None:
        for model in list(models):
            index = self._models.get(model)
            if index is None or doc_id not in index:
                continue
            index.remove(doc_id)  # type: ignore[attr-defined]
            if not index:  # an empty model index has no dimension worth enforcing
                del self._models[model]

    def _after_store_write(self) -> None:
        """Saves the graphs when the store has just compacted: both then describe one state."""
        if self._persisted and self._store.compactions != self._saved_compactions:
            self._saved_compactions = self._store.compactions
            self._persisted.save(self._graphs())

    def _on_close(self) -> None:
        if self._persisted:
            self._persisted.save(self._graphs())

    def _graphs(self) -> dict[str, HnswIndex]:
        return {m: i for m, i in self._models.items() if isinstance(i, HnswIndex)}

    # --- search -----------------------------------------------------------------------------

    def _search(self, query: Query, allowed: set[str] | None) -> SearchResult:
        if query.embedding is None:
            raise NoQueryEmbedding("the dense retriever needs a query embedding")
        index = self._models.get(query.model)
        if index is None:
            raise UnknownModel(query.model, sorted(self._models))
        if query.embedding.shape[0] != index.dimension:
            raise QueryDimensionMismatch(query.model, index.dimension, query.embedding.shape[0])
        if query.blank_embedding:  # nothing is closer to a zero vector than anything else
            return SearchResult([], len(index))
        vector = normalised(query.embedding)
        if isinstance(index, ModelIndex):
            ranked = exact_search(index, vector, query.top_k, allowed)
        else:
            assert isinstance(index, HnswIndex)
            ranked = self._graph_search(index, vector, query.top_k, allowed)
        documents = self._store.documents
        return SearchResult([Hit(documents[i], score) for i, score in ranked], len(index))

    def _graph_search(
        self, index: HnswIndex, vector: np.ndarray, top_k: int, allowed: set[str] | None
    ) -> list[tuple[str, float]]:
        settings = self._settings.planner
        matching = None if allowed is None else [i for i in allowed if i in index]
        chosen = plan(len(index), None if matching is None else len(matching), top_k, settings)
        while chosen.strategy == Strategy.GRAPH_FILTERED:
            assert allowed is not None and matching is not None
            found = index.search(vector, chosen.fetch, chosen.expansion)
            kept = [(i, s) for i, s in found if i in allowed][:top_k]
            if len(kept) >= min(top_k, len(matching)):
                return kept
            chosen = grow(chosen, len(index), settings)
        if chosen.strategy == Strategy.GRAPH:
            return index.search(vector, chosen.fetch, chosen.expansion)
        if chosen.strategy == Strategy.SCAN_ALL:
            return index.scan(vector, top_k)
        assert matching is not None
        matching.sort()  # ties then rank in id order, whatever the set's order
        scores = index.vectors(matching) @ vector
        return [(matching[row], float(scores[row])) for row in top_positions(scores, top_k)]

    # --- statistics -------------------------------------------------------------------------

    def _model_stats(self) -> list[ModelStats]:
        return [
            ModelStats(model, index.dimension, len(index), index.kind, index.memory_bytes())
            for model, index in sorted(self._models.items())
        ]


def exact_search(
    index: ModelIndex, vector: np.ndarray, top_k: int, allowed: set[str] | None
) -> list[tuple[str, float]]:
    scores = index.similarities(vector)
    if allowed is None:
        rows = None
        candidates = scores
    else:
        # The filter is a mask over this model's rows, applied before top-k.
        rows = np.fromiter((index.row_of[i] for i in allowed if i in index.row_of), dtype=np.intp)
        rows.sort()  # ties then rank in row order, as they do unfiltered
        candidates = scores[rows]
    best = top_positions(candidates, top_k)
    if rows is not None:
        best = rows[best]
    return [(index.ids[row], float(scores[row])) for row in best]


def to_graph(exact: ModelIndex, params: HnswParams) -> HnswIndex:
    """The same vectors in an HNSW graph (auto mode, once a model outgrows exact search)."""
    graph = HnswIndex(exact.dimension, params)
    for start in range(0, len(exact), BATCH_ROWS):
        ids = exact.ids[start : start + BATCH_ROWS]
        graph.put_many(ids, exact.matrix[start : start + len(ids)])
    log.info("model index moved to hnsw", extra={"vectors": len(graph)})
    return graph


def reconcile(index: HnswIndex, ids: list[str], vectors: list[np.ndarray]) -> tuple[int, int]:
    """Makes a (loaded or new) graph hold exactly the store's vectors for one model: adds
    what it lacks or holds differently, removes what the store no longer has. Returns the
    counts (added, removed)."""
    added = 0
    for start in range(0, len(ids), BATCH_ROWS):
        batch_ids = ids[start : start + BATCH_ROWS]
        batch = np.stack([normalised(v) for v in vectors[start : start + BATCH_ROWS]])
        stale = index.differing(batch_ids, batch)
        index.put_many([batch_ids[row] for row in stale], batch[stale])
        added += len(stale)
    wanted = set(ids)
    gone = [doc_id for doc_id in index.ids() if doc_id not in wanted]
    for doc_id in gone:
        index.remove(doc_id)
    log.info(
        "hnsw index reconciled with the store",
        extra={"vectors": len(index), "added": added, "removed": len(gone)},
    )
    return added, len(gone)
