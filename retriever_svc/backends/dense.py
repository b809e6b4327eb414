"""Primary retriever: exact cosine search with numpy, one index per embedding model id.

Vectors from different models live in different spaces, so each model id has its own
contiguous float32 matrix (rows L2-normalised on insert) and id list; a search touches only
the index of the query's model, and cosine similarity is a single matrix-vector product.
Exact search is the right default up to a few hundred thousand vectors per model; past that
an ANN index or a vector database belongs behind the same RetrieverService.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore

INITIAL_ROWS = 64


def normalised(vector: np.ndarray) -> np.ndarray:
    # float64 so the norm of any finite float32 vector is finite (1e30**2 overflows float32).
    wide = vector.astype(np.float64)
    norm = float(np.linalg.norm(wide))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError("vector must be finite and non-zero")
    return (wide / norm).astype(np.float32)


class ModelIndex:
    """Normalised vectors of one model: rows [0, len) of `matrix`, row i belongs to ids[i]."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.matrix = np.empty((INITIAL_ROWS, dimension), dtype=np.float32)
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

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

    def __init__(self, store: DocumentStore, max_models: int = 8) -> None:
        self._models: dict[str, ModelIndex] = {}
        # New model ids a write may introduce stop here (a stored index past it still loads).
        self.max_models = max_models
        super().__init__(store)

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

    def _index_add(self, doc: StoredDocument) -> None:
        for model, vector in doc.embeddings.items():
            index = self._models.get(model)
            if index is None:
                index = self._models[model] = ModelIndex(vector.shape[0])
            index.put(doc.id, vector)

    def _index_remove(self, doc: StoredDocument) -> None:
        self._drop_vectors(doc.id, doc.embeddings)

    def _index_replace(self, old: StoredDocument | None, new: StoredDocument) -> None:
        if old is not None:
            self._drop_vectors(old.id, [m for m in old.embeddings if m not in new.embeddings])
        self._index_add(new)  # overwrites rows in place for models both versions have

    def _drop_vectors(self, doc_id: str, models: Iterable[str]) -> None:
        for model in models:
            index = self._models.get(model)
            if index is None or doc_id not in index.row_of:
                continue
            index.remove(doc_id)
            if not index:  # an empty model index has no dimension worth enforcing
                del self._models[model]

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
        scores = index.similarities(normalised(query.embedding))
        if allowed is None:
            rows = None
            candidates = scores
        else:
            # The filter is a mask over this model's rows, applied before top-k.
            rows = np.fromiter(
                (index.row_of[i] for i in allowed if i in index.row_of), dtype=np.intp
            )
            rows.sort()  # ties then rank in row order, as they do unfiltered
            candidates = scores[rows]
        best = top_positions(candidates, query.top_k)
        if rows is not None:
            best = rows[best]
        documents = self._store.documents
        hits = [Hit(documents[index.ids[row]], float(scores[row])) for row in best]
        return SearchResult(hits, len(index))

    def _model_stats(self) -> list[ModelStats]:
        return [
            ModelStats(model, index.dimension, len(index))
            for model, index in sorted(self._models.items())
        ]
