"""The Milvus side of the Milvus backend: client, collections, and error translation.

Layout (one database, every name under the configured prefix):
- `<prefix>m_<model slug>_<hash>`: one collection per embedding model. Primary key `id` (the
  entry id, text), `document_id`, `text`, `meta` (JSON, the filterable metadata), `record`
  (JSON, what a hit returns besides the text) and `vector` (float, the model's dimension,
  L2-normalised, HNSW with inner product = cosine). The description holds the model id and
  dimension, so any retriever replica finds the collection of a model by listing.
- `<prefix>catalog`: one row per stored entry (chunk, or whole document written by Upsert)
  whatever its models: `id`, `document_id`, `content_hash`, `models` (JSON: model -> dimension) and
  `info` (JSON: title, position). It answers delete-by-id, the document RPCs and stats.
  Milvus requires a vector field in every collection, so it has a constant 2-d `marker`.

Reads use the consistency level of the setting milvus_consistency. Session (the default):
a search waits until the engine has applied every write this process made (the client
tracks its last write's timestamp per collection), so a document this retriever's Upsert
acknowledged is found by its next Search, while reads that follow no write of its own do
not wait; another replica's writes become visible within the engine's bounded staleness
(seconds). Strong: every read waits for the engine's clock to pass the read's start,
across replicas too, which costs up to a time tick (200 ms by default) per read (measured:
bench/vector_backends.py). Collections are created Strong, the strictest default for any
other client; reads name their level explicitly.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from pymilvus import DataType, MilvusClient, MilvusException

from retriever_svc.backends.base import BackendUnavailable, InvalidFilter

CONSISTENCY = "Strong"
# Creating and loading a collection builds segments and an index on the engine's nodes: it
# happens once per model, and takes seconds on a small standalone, longer than a search's
# deadline.
SCHEMA_TIMEOUT_S = 120.0
MAX_ID_LENGTH = 1024
MAX_TEXT_BYTES = 65535  # Milvus' largest VARCHAR
MARKER = [1.0, 0.0]
# Milvus caps offset + limit of one query; larger reads page with an iterator.
QUERY_BATCH = 1000


@dataclass(frozen=True)
class ModelCollection:
    model: str
    dimension: int
    name: str


@dataclass(frozen=True)
class EngineOptions:
    uri: str
    user: str
    password: str
    database: str
    prefix: str
    timeout_s: float
    hnsw_m: int
    hnsw_ef_construction: int
    consistency: str = "Session"


def collection_name(prefix: str, model: str) -> str:
    """Deterministic from the model id, so every replica picks the same collection."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:40] or "model"
    digest = hashlib.sha256(model.encode()).hexdigest()[:10]
    return f"{prefix}m_{slug}_{digest}"


def _is_bad_expression(exc: MilvusException) -> bool:
    message = str(exc.message).lower()
    return "expr" in message or "parse" in message or "invalid expression" in message


@contextmanager
def engine_errors(*, filter_in_call: bool = False) -> Iterator[None]:
    """Turns Milvus' failures into the backend's errors (never an unmapped exception)."""
    try:
        yield
    except MilvusException as exc:
        if filter_in_call and _is_bad_expression(exc):
            raise InvalidFilter(f"the vector database refused the filter: {exc.message}") from exc
        raise BackendUnavailable(f"vector database call failed: {exc.message}") from exc
    except grpc.RpcError as exc:
        raise BackendUnavailable(f"vector database unreachable: {exc}") from exc


class MilvusEngine:
    """A MilvusClient connected lazily (and again after a failure), plus the collections."""

    def __init__(self, options: EngineOptions) -> None:
        self._options = options
        self._client: MilvusClient | None = None
        self._connect_lock = threading.Lock()
        self._models: dict[str, ModelCollection] = {}
        self.catalog = f"{options.prefix}catalog"

    @property
    def timeout(self) -> float:
        return self._options.timeout_s

    @property
    def _schema_timeout(self) -> float:
        return max(self._options.timeout_s, SCHEMA_TIMEOUT_S)

    def client(self) -> MilvusClient:
        with self._connect_lock:
            if self._client is None:
                o = self._options
                with engine_errors():
                    try:
                        self._client = MilvusClient(
                            uri=o.uri,
                            user=o.user,
                            password=o.password,
                            db_name=o.database,
                            timeout=o.timeout_s,
                        )
                    except MilvusException:
                        raise
                    except Exception as exc:  # pymilvus raises plain exceptions on connect
                        raise BackendUnavailable(f"cannot connect to {o.uri}: {exc}") from exc
                self._ensure_catalog(self._client)
            return self._client

    def call(self, method: str, *args: Any, filter_in_call: bool = False, **kwargs: Any) -> Any:
        """client.<method>(*args, **kwargs) with this engine's timeout and error mapping."""
        client = self.client()
        with engine_errors(filter_in_call=filter_in_call):
            if method in ("search", "query"):
                kwargs["consistency_level"] = self._options.consistency
            return getattr(client, method)(*args, timeout=self.timeout, **kwargs)

    def close(self) -> None:
        with self._connect_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- collections ---------------------------------------------------------------------

    def models(self, refresh: bool = False) -> dict[str, ModelCollection]:
        """Every model's collection, listed from the engine on first use or on `refresh`."""
        if refresh or not self._models:
            client = self.client()
            found: dict[str, ModelCollection] = {}
            with engine_errors():
                for name in client.list_collections(timeout=self.timeout):
                    if not name.startswith(f"{self._options.prefix}m_"):
                        continue
                    described = client.describe_collection(name, timeout=self.timeout)
                    info = json.loads(described.get("description") or "{}")
                    if "model" in info:
                        found[info["model"]] = ModelCollection(
                            info["model"], int(info["dimension"]), name
                        )
            self._models = found
        return self._models

    def model(self, model: str) -> ModelCollection | None:
        known = self.models().get(model)
        return known if known is not None else self.models(refresh=True).get(model)

    def create_model(self, model: str, dimension: int) -> ModelCollection:
        """The model's collection, created (and loaded) unless another replica did first."""
        name = collection_name(self._options.prefix, model)
        client = self.client()
        with engine_errors():
            if not client.has_collection(name, timeout=self._schema_timeout):
                description = json.dumps({"model": model, "dimension": dimension})
                schema = MilvusClient.create_schema(
                    auto_id=False, enable_dynamic_field=False, description=description
                )
                schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
                schema.add_field("document_id", DataType.VARCHAR, max_length=MAX_ID_LENGTH)
                schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
                schema.add_field("meta", DataType.JSON)
                schema.add_field("record", DataType.JSON)
                schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
                index = client.prepare_index_params()
                index.add_index(
                    "vector",
                    index_type="HNSW",
                    metric_type="IP",
                    params={
                        "M": self._options.hnsw_m,
                        "efConstruction": self._options.hnsw_ef_construction,
                    },
                )
                client.create_collection(
                    name,
                    schema=schema,
                    index_params=index,
                    consistency_level=CONSISTENCY,
                    timeout=self._schema_timeout,
                )
            client.load_collection(name, timeout=self._schema_timeout)
        created = self.model(model)
        if created is None:
            raise BackendUnavailable(f"collection {name} vanished right after its creation")
        return created

    def _ensure_catalog(self, client: MilvusClient) -> None:
        with engine_errors():
            if not client.has_collection(self.catalog, timeout=self._schema_timeout):
                schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
                schema.add_field("document_id", DataType.VARCHAR, max_length=MAX_ID_LENGTH)
                schema.add_field("content_hash", DataType.VARCHAR, max_length=256)
                schema.add_field("models", DataType.JSON)
                schema.add_field("info", DataType.JSON)
                schema.add_field("marker", DataType.FLOAT_VECTOR, dim=len(MARKER))
                index = client.prepare_index_params()
                index.add_index("marker", index_type="FLAT", metric_type="L2")
                client.create_collection(
                    self.catalog,
                    schema=schema,
                    index_params=index,
                    consistency_level=CONSISTENCY,
                    timeout=self._schema_timeout,
                )
            client.load_collection(self.catalog, timeout=self._schema_timeout)

    # --- reads that page -----------------------------------------------------------------

    def query_all(
        self, collection: str, expression: str, fields: list[str]
    ) -> list[dict[str, Any]]:
        """Every row matching `expression` (paged past the engine's per-query cap)."""
        client = self.client()
        rows: list[dict[str, Any]] = []
        with engine_errors():
            iterator = client.query_iterator(
                collection,
                batch_size=QUERY_BATCH,
                filter=expression,
                output_fields=fields,
                timeout=self.timeout,
                consistency_level=self._options.consistency,
            )
            try:
                while batch := iterator.next():
                    rows.extend(batch)
            finally:
                iterator.close()
        return rows
