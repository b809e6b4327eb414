"""Vectors kept once: a stored document's embeddings read back from the model indexes.

Once a document is indexed, its `embeddings` dict of arrays is swapped for an
`IndexedVectors` view holding only the model ids; reading a vector (which only the store's
compaction does) fetches it from that model's index. The index (the exact matrix or the
HNSW graph) is then the one in-memory copy of every vector. The vectors read back are the
normalised ones the index holds, which rank exactly as the originals under cosine similarity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    kind: str
    dimension: int

    def __len__(self) -> int: ...

    def __contains__(self, doc_id: str) -> bool: ...

    def vector(self, doc_id: str) -> np.ndarray: ...

    def memory_bytes(self) -> int: ...


class IndexedVectors(Mapping[str, np.ndarray]):
    __slots__ = ("_doc_id", "_indexes", "_models")

    def __init__(
        self, indexes: Mapping[str, VectorIndex], doc_id: str, models: tuple[str, ...]
    ) -> None:
        self._indexes = indexes
        self._doc_id = doc_id
        self._models = models

    def __getitem__(self, model: str) -> np.ndarray:
        if model not in self._models:
            raise KeyError(model)
        return self._indexes[model].vector(self._doc_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model: object) -> bool:
        return model in self._models
