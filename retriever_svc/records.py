"""Binary record codec shared by the write-ahead log and the snapshot.

Frame:   <u32 payload length> <u32 CRC32 of (length bytes + payload)> <payload>   (little-endian)
Payload: <u8 op> <u32 header length> <UTF-8 JSON header> <blob>

An upsert's header lists each document (id, text, metadata and, per embedding model, its
dimension); the blob is every vector's float32 little-endian bytes concatenated in that
order, so a vector loads with one `np.frombuffer` and costs four bytes per component.
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


@dataclass
class StoredDocument:
    """A document as the store keeps it; embeddings are float32 vectors keyed by model id."""

    id: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)


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
            entries.append(
                {"id": doc.id, "text": doc.text, "metadata": doc.metadata, "vectors": vectors}
            )
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
            documents.append(
                StoredDocument(entry["id"], entry["text"], dict(entry["metadata"]), embeddings)
            )
    except (struct.error, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"undecodable record: {exc}") from exc
    if offset != len(blob):
        raise ValueError("undecodable record: vector bytes do not match the header")
    return Record(op, header, documents)
