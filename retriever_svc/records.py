"""Binary record codec shared by the write-ahead log and the snapshot.

Frame:   <u32 payload length> <u32 CRC32 of (length bytes + payload)> <payload>   (little-endian)
Payload: <u8 op> <u32 header length> <UTF-8 JSON header> <blob>

An upsert's header lists each document (id, text, metadata, multi-valued metadata, chunk
position and, per embedding model, its dimension); the blob is every vector's float32
little-endian bytes concatenated in that order, so a vector loads with one `np.frombuffer`
and costs four bytes per component.
The CRC covers the length too, so a torn or garbled frame is never mistaken for a record.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FRAME = struct.Struct("<II")
LENGTH = struct.Struct("<I")
PAYLOAD_HEAD = struct.Struct("<BI")
VECTOR_DTYPE = np.dtype("<f4")
# A frame claiming more than this is garbage (no RPC can carry it), not a record to wait for.
MAX_PAYLOAD_BYTES = 1 << 30

OP_UPSERT = 1
OP_DELETE = 2
OP_SNAPSHOT_BEGIN = 3
OP_SNAPSHOT_END = 4
# Replaces every chunk of the documents named in the header's "replace" list
# ([{"id": document id, "hash": content hash}]) with the record's documents; with no
# documents for an id it removes that document. Applied as a whole or not at all.
OP_REPLACE = 5


@dataclass(frozen=True)
class ChunkInfo:
    """Where a chunk sits in its document (the proto's harag.v1.Chunk)."""

    document_id: str
    position: int = 0
    count: int = 0
    title: str = ""
    heading_path: tuple[str, ...] = ()
    page: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "position": self.position,
            "count": self.count,
            "title": self.title,
            "heading_path": list(self.heading_path),
            "page": self.page,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkInfo:
        return cls(
            str(data["document_id"]),
            int(data.get("position", 0)),
            int(data.get("count", 0)),
            str(data.get("title", "")),
            tuple(str(h) for h in data.get("heading_path", ())),
            int(data.get("page", 0)),
        )


@dataclass
class StoredDocument:
    """A document as the store keeps it; embeddings are float32 vectors keyed by model id."""

    id: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    # Multi-valued metadata (tags = ["rag", "retrieval"]); filters match any of the values.
    metadata_values: dict[str, list[str]] = field(default_factory=dict)
    # Set when the document is a chunk of a larger document.
    chunk: ChunkInfo | None = None

    @property
    def document_id(self) -> str:
        """The document this entry belongs to: its chunk's document, else itself."""
        return self.chunk.document_id if self.chunk is not None else self.id

    def metadata_pairs(self) -> list[tuple[str, str]]:
        """Every (key, value) a filter can match, from `metadata` and `metadata_values`."""
        pairs = list(self.metadata.items())
        for key, values in self.metadata_values.items():
            pairs.extend((key, value) for value in values)
        return pairs


@dataclass(frozen=True)
class Record:
    op: int
    header: dict[str, Any]
    documents: list[StoredDocument]


def frame(payload: bytes) -> bytes:
    length = LENGTH.pack(len(payload))
    return length + LENGTH.pack(zlib.crc32(payload, zlib.crc32(length))) + payload


def read_frames(data: bytes | memoryview) -> Iterator[tuple[int, memoryview]]:
    """Yields (end offset, payload) for each intact frame; stops at the first bad one."""
    view = memoryview(data)
    offset = 0
    while offset + FRAME.size <= len(view):
        length, crc = FRAME.unpack_from(view, offset)
        end = offset + FRAME.size + length
        if length > MAX_PAYLOAD_BYTES or end > len(view):
            return
        payload = view[offset + FRAME.size : end]
        if zlib.crc32(payload, zlib.crc32(view[offset : offset + LENGTH.size])) != crc:
            return
        yield end, payload
        offset = end


def encode(op: int, header: dict[str, Any], documents: Sequence[StoredDocument] = ()) -> bytes:
    blobs: list[bytes] = []
    if documents:
        entries = []
        for doc in documents:
            vectors = []
            for model, vector in doc.embeddings.items():
                vectors.append([model, int(vector.shape[0])])
                blobs.append(np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes())
            entry: dict[str, Any] = {
                "id": doc.id,
                "text": doc.text,
                "metadata": doc.metadata,
                "vectors": vectors,
            }
            if doc.metadata_values:
                entry["mv"] = doc.metadata_values
            if doc.chunk is not None:
                entry["chunk"] = doc.chunk.to_json()
            entries.append(entry)
        header = {**header, "docs": entries}
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    return PAYLOAD_HEAD.pack(op, len(head)) + head + b"".join(blobs)


def decode(payload: memoryview) -> Record:
    """Decodes one payload; raises ValueError when it does not parse (a CRC-valid bug)."""
    try:
        op, head_len = PAYLOAD_HEAD.unpack_from(payload, 0)
        head_end = PAYLOAD_HEAD.size + head_len
        header = json.loads(bytes(payload[PAYLOAD_HEAD.size : head_end]))
        blob = payload[head_end:]
        documents: list[StoredDocument] = []
        offset = 0
        for entry in header.pop("docs", ()):
            embeddings: dict[str, np.ndarray] = {}
            for model, dim in entry["vectors"]:
                # copy() so a long-lived vector does not pin its whole record in memory
                vector = np.frombuffer(blob, VECTOR_DTYPE, count=dim, offset=offset).copy()
                embeddings[model] = vector.astype(np.float32, copy=False)
                offset += dim * VECTOR_DTYPE.itemsize
            chunk = entry.get("chunk")
            documents.append(
                StoredDocument(
                    entry["id"],
                    entry["text"],
                    dict(entry["metadata"]),
                    embeddings,
                    {str(k): [str(v) for v in vs] for k, vs in entry.get("mv", {}).items()},
                    ChunkInfo.from_json(chunk) if chunk is not None else None,
                )
            )
    except (struct.error, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"undecodable record: {exc}") from exc
    if offset != len(blob):
        raise ValueError("undecodable record: vector bytes do not match the header")
    return Record(op, header, documents)
