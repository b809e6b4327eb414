"""Where the dense backend keeps its HNSW graphs: `<data_dir>/ann/`, one pair per model.

A model id is any string, so each pair is named by a hash of it (`<sha256[:16]>.usearch` and
`.json`, written by `HnswIndex.save`). The graphs are a cache of the store, saved when the
store compacts and on close: a missing, torn or stale pair costs a rebuild or a reconcile
at start, never a wrong answer (dense.reconcile compares every vector with the store).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from retriever_svc.backends.hnsw import HnswIndex, HnswParams, remove_saved, saved_stems

log = logging.getLogger("harag.retriever.hnsw")

DIRECTORY = "ann"


class IndexFiles:
    def __init__(self, data_dir: str | Path) -> None:
        self.directory = Path(data_dir) / DIRECTORY

    def stem(self, model: str) -> Path:
        return self.directory / hashlib.sha256(model.encode()).hexdigest()[:16]

    def load(self, params: HnswParams) -> dict[str, HnswIndex]:
        if not self.directory.is_dir():
            return {}
        loaded: dict[str, HnswIndex] = {}
        for stem in saved_stems(self.directory):
            started = time.perf_counter()
            pair = HnswIndex.load(stem, params)
            if pair is None:
                remove_saved(stem)
                continue
            model, index = pair
            loaded[model] = index
            log.info(
                "hnsw index loaded",
                extra={
                    "model": model,
                    "vectors": len(index),
                    "seconds": round(time.perf_counter() - started, 3),
                },
            )
        return loaded

    def save(self, graphs: Mapping[str, HnswIndex]) -> None:
        """Writes every graph and removes the files of models no longer indexed. A failure
        is logged, not raised: the write that triggered it is already durable in the store."""
        started = time.perf_counter()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            kept = set()
            for model, index in graphs.items():
                stem = self.stem(model)
                index.save(stem, model)
                kept.add(stem.name)
            for stem in saved_stems(self.directory):
                if stem.name not in kept:
                    remove_saved(stem)
        except OSError as exc:
            log.error("saving the hnsw indexes failed", extra={"error": str(exc)})
            return
        log.info(
            "hnsw indexes saved",
            extra={"models": len(graphs), "seconds": round(time.perf_counter() - started, 3)},
        )

    def forget(self, models: Iterable[str]) -> None:
        for model in models:
            remove_saved(self.stem(model))
