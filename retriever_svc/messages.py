"""Between RetrieverService messages and the store's records: documents and query vectors."""

from __future__ import annotations

import numpy as np

from harag.v1 import common_pb2
from retriever_svc.records import ChunkInfo, StoredDocument


def searchable_vector(embedding: common_pb2.Embedding) -> np.ndarray | None:
    """The embedding as float32, or None when it cannot be searched (empty, zero, NaN/inf)."""
    vector = np.array(embedding.values, dtype=np.float32)
    if vector.size == 0 or not np.isfinite(vector).all() or not vector.any():
        return None
    return vector


def is_zero_vector(embedding: common_pb2.Embedding) -> bool:
    """A finite all-zero vector: what the hashed embedders give a text with no word tokens."""
    vector = np.array(embedding.values, dtype=np.float32)
    return bool(vector.size > 0 and np.isfinite(vector).all() and not vector.any())


def stored_document(doc: common_pb2.Document, embeddings: dict[str, np.ndarray]) -> StoredDocument:
    chunk = None
    if doc.HasField("chunk"):
        c = doc.chunk
        chunk = ChunkInfo(
            c.document_id, c.position, c.count, c.title, tuple(c.heading_path), c.page
        )
    return StoredDocument(
        doc.id,
        doc.text,
        dict(doc.metadata),
        embeddings,
        {key: list(mv.values) for key, mv in doc.metadata_values.items()},
        chunk,
    )


def document_message(doc: StoredDocument) -> common_pb2.Document:
    message = common_pb2.Document(id=doc.id, text=doc.text, metadata=doc.metadata)
    for key, values in doc.metadata_values.items():
        message.metadata_values[key].values.extend(values)
    if doc.chunk is not None:
        c = doc.chunk
        message.chunk.CopyFrom(
            common_pb2.Chunk(
                document_id=c.document_id,
                position=c.position,
                count=c.count,
                title=c.title,
                heading_path=c.heading_path,
                page=c.page,
            )
        )
    return message
