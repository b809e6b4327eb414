"""Dense retrieval on a Milvus server or cluster (vector_backend=milvus).

The engine holds everything: this process keeps no data directory, so any number of
replicas can serve one cluster and a restarted retriever has nothing to rebuild. Layout
and consistency: see milvus_engine. Writes are serialised per process by one lock; across
replicas the last write of an entry wins, as with the embedded backend's single writer.

Milvus has no transactions across collections, so a write touches the model collections
first and the catalog last, and a delete removes the catalog row last: a failure in
between leaves an entry the catalog still names, and repeating the call (every call here
is idempotent) finishes it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from retriever_svc.backends.base import (
    DENSE,
    DimensionConflict,
    DimensionMismatch,
    EntryTooLarge,
    Hit,
    ModelStats,
    NoQueryEmbedding,
    Query,
    QueryDimensionMismatch,
    ReplaceOutcome,
    SearchResult,
    Stats,
    UnknownModel,
)
from retriever_svc.backends.dense import normalised
from retriever_svc.backends.milvus_engine import (
    MARKER,
    MAX_ID_LENGTH,
    MAX_TEXT_BYTES,
    EngineOptions,
    MilvusEngine,
    ModelCollection,
)
from retriever_svc.backends.milvus_expr import field_in, filter_expression, filter_values, literal
from retriever_svc.records import ChunkInfo, StoredDocument
from retriever_svc.store import DocumentSummary, Replacement

# How long a collection's row count (SearchResponse.index_size) may be reused.
COUNT_TTL_S = 1.0
CATALOG_FIELDS = ["id", "document_id", "content_hash", "models", "info"]


def _too_large(doc: StoredDocument) -> tuple[str, str] | None:
    if len(doc.text.encode()) > MAX_TEXT_BYTES:
        return "document.text", f"is over {MAX_TEXT_BYTES} bytes, the vector database's limit"
    if len(doc.id.encode()) > MAX_ID_LENGTH or len(doc.document_id.encode()) > MAX_ID_LENGTH:
        return "document.id", f"is over {MAX_ID_LENGTH} bytes, the vector database's limit"
    return None


def _record(doc: StoredDocument) -> dict[str, Any]:
    record: dict[str, Any] = {"metadata": doc.metadata}
    if doc.metadata_values:
        record["mv"] = doc.metadata_values
    if doc.chunk is not None:
        record["chunk"] = doc.chunk.to_json()
    return record


def _document(entry_id: str, text: str, record: dict[str, Any]) -> StoredDocument:
    chunk = record.get("chunk")
    return StoredDocument(
        entry_id,
        text,
        {str(k): str(v) for k, v in record.get("metadata", {}).items()},
        {},
        {str(k): [str(v) for v in vs] for k, vs in record.get("mv", {}).items()},
        ChunkInfo.from_json(chunk) if chunk is not None else None,
    )


class MilvusBackend:
    mode = DENSE

    def __init__(self, engine: MilvusEngine, search_ef: int) -> None:
        self._engine = engine
        self._search_ef = search_ef
        self._write_lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}  # collection -> (when, rows)

    @classmethod
    def connect(cls, options: EngineOptions, search_ef: int) -> MilvusBackend:
        return cls(MilvusEngine(options), search_ef)

    # --- search --------------------------------------------------------------------------

    def search(self, query: Query) -> SearchResult:
        if query.embedding is None:
            raise NoQueryEmbedding("the dense retriever needs a query embedding")
        collection = self._engine.model(query.model)
        if collection is None:
            raise UnknownModel(query.model, sorted(self._engine.models()))
        if query.embedding.shape[0] != collection.dimension:
            raise QueryDimensionMismatch(
                query.model, collection.dimension, query.embedding.shape[0]
            )
        size = self._count(collection.name)
        if query.blank_embedding:
            return SearchResult([], size)
        vector = normalised(query.embedding).tolist()
        expression = filter_expression(query.filters)
        params = {"metric_type": "IP", "params": {"ef": max(self._search_ef, query.top_k)}}
        found = self._engine.call(
            "search",
            collection.name,
            [vector],
            filter=expression,
            limit=query.top_k,
            output_fields=["text", "record"],
            search_params=params,
            filter_in_call=bool(expression),
        )
        hits = [
            Hit(_document(str(h["id"]), h["entity"]["text"], h["entity"]["record"]), h["distance"])
            for h in found[0]
        ]
        return SearchResult(hits, size)

    def _count(self, collection: str) -> int:
        now = time.monotonic()
        cached = self._counts.get(collection)
        if cached is not None and now - cached[0] < COUNT_TTL_S:
            return cached[1]
        rows = self._engine.call("query", collection, filter="", output_fields=["count(*)"])
        count = int(rows[0]["count(*)"])
        self._counts[collection] = (now, count)
        return count

    # --- writes --------------------------------------------------------------------------

    def upsert(self, documents: Sequence[StoredDocument]) -> int:
        for position, doc in enumerate(documents):
            problem = _too_large(doc)
            if problem is not None:
                raise EntryTooLarge(position, *problem)
        latest = {doc.id: doc for doc in documents}  # a batch may name an id twice
        with self._write_lock:
            self._check_dimensions(documents)
            old = self._catalog_rows(field_in("id", latest))
            self._write(list(latest.values()), {r["id"]: r for r in old}, hashes={})
        return len(documents)

    def delete(self, ids: Iterable[str]) -> int:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return 0
        with self._write_lock:
            rows = self._catalog_rows(field_in("id", wanted))
            self._remove(rows)
        return len(rows)

    def replace(self, replacements: Sequence[Replacement]) -> list[ReplaceOutcome]:
        outcomes: dict[str, ReplaceOutcome] = {}
        with self._write_lock:
            chunk_ids = [c.id for r in replacements for c in r.chunks]
            owners = {
                r["id"]: r["document_id"] for r in self._catalog_rows(field_in("id", chunk_ids))
            }
            dimensions = {m: c.dimension for m, c in self._engine.models().items()}
            accepted: list[Replacement] = []
            claimed: dict[str, str] = {}
            for item in replacements:
                refusal = self._refusal(item, owners, claimed, dimensions)
                if refusal:
                    outcomes[item.document_id] = ReplaceOutcome(item.document_id, False, refusal, 0)
                    continue
                accepted.append(item)
                claimed.update((c.id, item.document_id) for c in item.chunks)
            if accepted:
                ids = [r.document_id for r in accepted]
                self._remove(self._catalog_rows(field_in("document_id", ids)))
                hashes = {r.document_id: r.content_hash for r in accepted}
                self._write([c for r in accepted for c in r.chunks], {}, hashes)
            for item in accepted:
                outcomes[item.document_id] = ReplaceOutcome(
                    item.document_id, True, "", len(item.chunks)
                )
        return [outcomes[item.document_id] for item in replacements]

    def _refusal(
        self,
        item: Replacement,
        owners: dict[str, str],
        claimed: dict[str, str],
        dimensions: dict[str, int],
    ) -> str:
        for chunk in item.chunks:
            owner = claimed.get(chunk.id) or owners.get(chunk.id)
            if owner is not None and owner != item.document_id:
                return f"chunk id {chunk.id!r} belongs to document {owner!r}"
            problem = _too_large(chunk)
            if problem is not None:
                return f"chunk {chunk.id!r}: {problem[0]} {problem[1]}"
        introduced: dict[str, int] = {}
        for chunk in item.chunks:
            for model, vector in chunk.embeddings.items():
                expected = dimensions.get(model, introduced.setdefault(model, vector.shape[0]))
                if vector.shape[0] != expected:
                    return (
                        f"chunk {chunk.id!r}: model {model!r} embedding has "
                        f"{vector.shape[0]} dimensions; its index has {expected}"
                    )
        dimensions.update(introduced)
        return ""

    def remove_documents(self, document_ids: Iterable[str]) -> tuple[list[str], int]:
        wanted = list(dict.fromkeys(document_ids))
        if not wanted:
            return [], 0
        with self._write_lock:
            rows = self._catalog_rows(field_in("document_id", wanted))
            self._remove(rows)
        removed = {r["document_id"] for r in rows}
        return [d for d in wanted if d in removed], len(rows)

    def _check_dimensions(self, documents: Sequence[StoredDocument]) -> None:
        dimensions = {m: c.dimension for m, c in self._engine.models().items()}
        conflicts = []
        for position, doc in enumerate(documents):
            for model, vector in doc.embeddings.items():
                expected = dimensions.setdefault(model, vector.shape[0])
                if vector.shape[0] != expected:
                    conflicts.append(DimensionConflict(position, model, expected, vector.shape[0]))
        if conflicts:
            raise DimensionMismatch(conflicts)

    def _collection(self, model: str, dimension: int) -> ModelCollection:
        return self._engine.model(model) or self._engine.create_model(model, dimension)

    def _write(
        self,
        entries: Sequence[StoredDocument],
        old_rows: dict[str, dict[str, Any]],
        hashes: dict[str, str],
    ) -> None:
        """Upserts entries into their models' collections, drops vectors of models an entry
        no longer has, then records the entries in the catalog (last: it names them)."""
        self._counts.clear()
        by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
        stale: dict[str, list[str]] = defaultdict(list)
        catalog = []
        for doc in entries:
            for model, vector in doc.embeddings.items():
                by_model[model].append(
                    {
                        "id": doc.id,
                        "document_id": doc.document_id,
                        "text": doc.text,
                        "meta": filter_values(doc.metadata, doc.metadata_values),
                        "record": _record(doc),
                        "vector": normalised(vector).tolist(),
                    }
                )
            previous = old_rows.get(doc.id)
            for model in previous["models"] if previous else ():
                if model not in doc.embeddings:
                    stale[model].append(doc.id)
            chunk = doc.chunk
            catalog.append(
                {
                    "id": doc.id,
                    "document_id": doc.document_id,
                    "content_hash": hashes.get(doc.document_id, ""),
                    # a JSON field must hold an object: model -> dimension
                    "models": {m: int(v.shape[0]) for m, v in sorted(doc.embeddings.items())},
                    "info": {
                        "title": chunk.title if chunk else "",
                        "position": chunk.position if chunk else 0,
                    },
                    "marker": MARKER,
                }
            )
        for model, rows in by_model.items():
            name = self._collection(model, len(rows[0]["vector"])).name
            self._engine.call("upsert", name, rows)
        self._delete_vectors(stale)
        if catalog:
            self._engine.call("upsert", self._engine.catalog, catalog)

    def _remove(self, rows: Sequence[dict[str, Any]]) -> None:
        self._counts.clear()
        stale: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            for model in row["models"]:
                stale[model].append(row["id"])
        self._delete_vectors(stale)
        if rows:
            ids = [r["id"] for r in rows]
            self._engine.call("delete", self._engine.catalog, ids=ids)

    def _delete_vectors(self, ids_by_model: dict[str, list[str]]) -> None:
        models = self._engine.models()
        for model, ids in ids_by_model.items():
            collection = models.get(model)
            if collection is not None:
                self._engine.call("delete", collection.name, ids=ids)

    # --- reads of the catalog ------------------------------------------------------------

    def _catalog_rows(self, expression: str) -> list[dict[str, Any]]:
        return self._engine.query_all(self._engine.catalog, expression, CATALOG_FIELDS)

    def document_hashes(self, document_ids: Sequence[str]) -> dict[str, str]:
        wanted = [i for i in dict.fromkeys(document_ids) if i]
        if not wanted:
            return {}
        rows = self._catalog_rows(field_in("document_id", wanted) + ' and content_hash != ""')
        return {r["document_id"]: r["content_hash"] for r in rows}

    def list_documents(self, after: str, limit: int) -> list[DocumentSummary]:
        """Documents after `after` in id order. Milvus queries return rows unordered, so this
        reads every later catalog row's document id (a cost linear in the catalog: fine for
        the operator's listing, not for a hot path)."""
        expression = f"document_id > {literal(after)}" if after else 'document_id != ""'
        rows = self._engine.query_all(self._engine.catalog, expression, ["document_id"])
        page = sorted({r["document_id"] for r in rows})[:limit]
        if not page:
            return []
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in self._catalog_rows(field_in("document_id", page)):
            grouped[row["document_id"]].append(row)
        summaries = []
        for document_id in page:
            entries = grouped[document_id]
            first = min(entries, key=lambda r: (r["info"].get("position", 0), r["id"]))
            content_hash = next((r["content_hash"] for r in entries if r["content_hash"]), "")
            summaries.append(
                DocumentSummary(
                    document_id, str(first["info"].get("title", "")), len(entries), content_hash
                )
            )
        return summaries

    def stats(self) -> Stats:
        rows = self._engine.query_all(self._engine.catalog, 'id != ""', ["document_id"])
        models = [
            ModelStats(m.model, m.dimension, self._count(m.name))
            for m in sorted(self._engine.models(refresh=True).values(), key=lambda m: m.model)
        ]
        # disk_bytes: the engine's storage is not this process's to measure.
        return Stats(len({r["document_id"] for r in rows}), models, 0, len(rows))

    def close(self) -> None:
        self._engine.close()
