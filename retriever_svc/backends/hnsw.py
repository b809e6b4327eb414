"""One embedding model's vectors in an approximate HNSW graph (usearch), keyed by document id.

usearch was chosen over hnswlib and faiss (measurements in the README, "Choosing a retriever
backend"): it ships wheels, removes and re-adds keys (faiss's HNSW cannot delete), stores
f16 vectors (half the memory, recall unchanged at 384 d) and saves/restores an index file.
Vectors are L2-normalised before they are added, so the inner-product metric is cosine
similarity and usearch's distance is 1 - cosine.

The index is the only in-memory copy of the vectors: the store's documents read theirs back
from here (`vectors.IndexedVectors`). Not thread-safe: the backend's lock serialises calls.

Persistence: `save` writes the usearch file and a JSON sidecar (model, dimension, the key of
each document id, and the index file's size, which ties the pair together), each to a
temporary name, fsync'ed and renamed. `load` returns None when the pair is missing, torn or
built with other parameters; the backend then rebuilds, and in any case reconciles the
loaded index with the store, which stays the source of truth.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from usearch.index import Index

log = logging.getLogger("harag.retriever.hnsw")

KEY_DTYPE = np.uint64
# Rows per usearch call when bulk-adding or reading back: bounds the temporary copies.
BATCH_ROWS = 8192
INT_BYTES = 32  # a CPython int above 2**30 and below 2**60, rounded to its allocation


@dataclass(frozen=True)
class HnswParams:
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64
    vector_type: str = "f16"
    threads: int = 0  # bulk-add threads; 0: every core


class HnswIndex:
    kind = "hnsw"

    def __init__(
        self,
        dimension: int,
        params: HnswParams,
        index: Index | None = None,
        key_of: dict[str, int] | None = None,
    ) -> None:
        self.dimension = dimension
        self.params = params
        self._index = index or Index(
            ndim=dimension,
            metric="ip",
            dtype=params.vector_type,
            connectivity=params.connectivity,
            expansion_add=params.expansion_add,
            expansion_search=params.expansion_search,
        )
        self._key_of: dict[str, int] = key_of or {}
        self._id_of: dict[int, str] = {key: doc_id for doc_id, key in self._key_of.items()}
        self._next_key = max(self._id_of, default=-1) + 1

    def __len__(self) -> int:
        return len(self._key_of)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._key_of

    def ids(self) -> list[str]:
        return list(self._key_of)

    # --- writes (vectors already normalised, float32) ---------------------------------------

    def put(self, doc_id: str, vector: np.ndarray) -> None:
        self.put_many([doc_id], vector[None, :])

    def put_many(self, doc_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Adds or replaces each id's vector (an id must appear once)."""
        if not doc_ids:
            return
        replaced = [self._key_of[i] for i in doc_ids if i in self._key_of]
        if replaced:  # a graph node cannot move: the old one goes, a new one takes its key
            self._index.remove(np.asarray(replaced, dtype=KEY_DTYPE))
        keys = np.empty(len(doc_ids), dtype=KEY_DTYPE)
        for row, doc_id in enumerate(doc_ids):
            key = self._key_of.get(doc_id)
            if key is None:
                key = self._key_of[doc_id] = self._next_key
                self._id_of[key] = doc_id
                self._next_key += 1
            keys[row] = key
        threads = 1 if len(doc_ids) < 256 else self.params.threads
        self._index.add(keys, vectors, threads=threads)

    def remove(self, doc_id: str) -> None:
        key = self._key_of.pop(doc_id)
        del self._id_of[key]
        self._index.remove(key)

    # --- reads ------------------------------------------------------------------------------

    def vector(self, doc_id: str) -> np.ndarray:
        stored = self._index.get(self._key_of[doc_id], dtype=np.float32)
        return np.asarray(stored, dtype=np.float32).reshape(self.dimension)

    def vectors(self, doc_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of `doc_ids` (all present) as one float32 matrix."""
        if not doc_ids:
            return np.empty((0, self.dimension), dtype=np.float32)
        keys = np.fromiter((self._key_of[i] for i in doc_ids), dtype=KEY_DTYPE, count=len(doc_ids))
        rows = self._index.get(keys, dtype=np.float32)
        return np.asarray(np.stack(rows) if isinstance(rows, tuple) else rows, dtype=np.float32)

    def search(self, query: np.ndarray, count: int, expansion: int) -> list[tuple[str, float]]:
        """Approximately the `count` nearest (id, cosine), best first."""
        count = min(count, len(self))
        if count <= 0:
            return []
        self._index.expansion_search = max(expansion, count)
        found = self._index.search(query, count, threads=1)
        return [
            (self._id_of[int(key)], 1.0 - float(distance))
            for key, distance in zip(found.keys, found.distances, strict=True)
        ]

    def scan(self, query: np.ndarray, count: int) -> list[tuple[str, float]]:
        """Exactly the `count` nearest (a brute-force pass over every stored vector)."""
        count = min(count, len(self))
        if count <= 0:
            return []
        found = self._index.search(query, count, exact=True, threads=1)
        return [
            (self._id_of[int(key)], 1.0 - float(distance))
            for key, distance in zip(found.keys, found.distances, strict=True)
        ]

    def memory_bytes(self) -> int:
        # usearch's own count (vectors, links, reserved slots), the two id maps and their
        # int keys (shared by both maps; the id strings belong to the store).
        maps = sys.getsizeof(self._key_of) + sys.getsizeof(self._id_of)
        return int(self._index.memory_usage) + maps + INT_BYTES * len(self._key_of)

    # --- persistence ------------------------------------------------------------------------

    def save(self, stem: Path, model: str) -> None:
        """Writes `<stem>.usearch` and `<stem>.json` (see the module doc)."""
        index_path = stem.with_suffix(".usearch")
        tmp = stem.with_suffix(".usearch.tmp")
        self._index.save(str(tmp))
        _fsync_file(tmp)
        os.replace(tmp, index_path)
        sidecar = {
            "model": model,
            "dimension": self.dimension,
            "vector_type": self.params.vector_type,
            "connectivity": self.params.connectivity,
            "index_bytes": index_path.stat().st_size,
            "keys": self._key_of,
        }
        tmp = stem.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(sidecar, ensure_ascii=False, separators=(",", ":")))
        _fsync_file(tmp)
        os.replace(tmp, stem.with_suffix(".json"))

    @classmethod
    def load(cls, stem: Path, params: HnswParams) -> tuple[str, HnswIndex] | None:
        """(model, index) from a saved pair, or None when there is no usable one."""
        try:
            sidecar = json.loads(stem.with_suffix(".json").read_text())
            index_path = stem.with_suffix(".usearch")
            if sidecar["index_bytes"] != index_path.stat().st_size:
                log.warning(
                    "index file and its key map disagree; rebuilding", extra={"stem": str(stem)}
                )
                return None
            if (sidecar["vector_type"], sidecar["connectivity"]) != (
                params.vector_type,
                params.connectivity,
            ):
                log.info("index saved with other parameters; rebuilding", extra={"stem": str(stem)})
                return None
            index = Index.restore(str(index_path))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            log.warning(
                "unusable saved index; rebuilding", extra={"stem": str(stem), "error": str(exc)}
            )
            return None
        if index is None or index.ndim != int(sidecar["dimension"]):
            return None
        index.expansion_add = params.expansion_add
        key_of = {str(k): int(v) for k, v in sidecar["keys"].items()}
        if len(index) != len(key_of):
            return None
        return str(sidecar["model"]), cls(int(sidecar["dimension"]), params, index, key_of)

    def differing(self, doc_ids: Sequence[str], vectors: np.ndarray) -> list[int]:
        """Rows of `vectors` (normalised) that this index lacks or holds a different vector for."""
        present = [row for row, doc_id in enumerate(doc_ids) if doc_id in self._key_of]
        stale = [row for row, doc_id in enumerate(doc_ids) if doc_id not in self._key_of]
        if present:
            held = self.vectors([doc_ids[row] for row in present])
            # f16 storage rounds each component by up to ~5e-4 of its value; a real change
            # moves a unit vector by far more.
            drift = np.max(np.abs(held - vectors[present]), axis=1)
            stale += [present[i] for i in np.flatnonzero(drift > 2e-3)]
        return sorted(stale)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_saved(stem: Path) -> None:
    for suffix in (".usearch", ".json", ".usearch.tmp", ".json.tmp"):
        stem.with_suffix(suffix).unlink(missing_ok=True)


def saved_stems(directory: Path) -> Iterable[Path]:
    return (p.with_suffix("") for p in sorted(directory.glob("*.json")))
