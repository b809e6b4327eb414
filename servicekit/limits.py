"""Size limits shared by the gateway and the retrievers: what a document's metadata may carry
and how large a reply with documents in it may grow.

Metadata is copied onto every chunk and returned with every search hit, so an unbounded
value multiplies: forty documents with 1 MB of metadata made a `top_k` 50 search reply
larger than any gRPC limit, and that failure looked like a broken retriever. A document
over a bound is refused (INVALID_ARGUMENT naming `documents[i].metadata`); a reply over
its bound is trimmed (texts shortened first, then the lowest-ranked documents dropped),
never failed, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from harag.v1 import common_pb2
from servicekit.errors import FieldViolations
from servicekit.settings import check_fields, setting

# The default receive limit of a gRPC client (grpcio, grpc-js, grpc-go): 4 MiB.
CLIENT_DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024
# A shortened text keeps at least this much (bytes of UTF-8) before documents are dropped.
MIN_TRIMMED_TEXT_BYTES = 256
TRIM_MARK = "\u2026"  # ends a shortened text, so a reader sees it was cut
# Per document, an upper bound of the bytes its framing in a repeated field can take
# (field tags and length prefixes of ScoredDocument, Document and text).
FRAMING_BYTES = 16


@dataclass(frozen=True)
class DocumentLimits:
    """What one document's metadata may carry (`metadata` and `metadata_values` together)."""

    max_metadata_bytes: int = setting(
        32 * 1024,
        "max_metadata_bytes",
        "Most bytes (UTF-8) of metadata keys and values one document may carry; metadata is "
        "copied onto every chunk and returned with every search hit.",
        unit="bytes",
        minimum=1,
        maximum=16 * 1024 * 1024,
    )
    max_metadata_keys: int = setting(
        64,
        "max_metadata_keys",
        "Most metadata keys one document may carry (metadata and metadata_values together).",
        unit="keys",
        minimum=1,
        maximum=100_000,
    )
    max_metadata_value_chars: int = setting(
        8192,
        "max_metadata_value_chars",
        "Longest metadata key or value.",
        unit="characters",
        minimum=1,
        maximum=16 * 1024 * 1024,
    )

    def __post_init__(self) -> None:
        check_fields(self)


def check_metadata(
    document: common_pb2.Document, limits: DocumentLimits, violations: FieldViolations, path: str
) -> None:
    """Adds one violation naming `<path>.metadata` when the document's metadata is over a
    bound (the first bound it breaks: one line is enough to fix it)."""
    keys = len(document.metadata) + len(document.metadata_values)
    field = f"{path}.metadata"
    if keys > limits.max_metadata_keys:
        violations.add(
            field,
            f"has {keys} keys; at most {limits.max_metadata_keys} (setting max_metadata_keys)",
        )
        return
    texts = [*document.metadata.keys(), *document.metadata.values()]
    for key, values in document.metadata_values.items():
        texts.append(key)
        texts.extend(values.values)
    longest = max(map(len, texts), default=0)
    if longest > limits.max_metadata_value_chars:
        violations.add(
            field,
            f"has a key or value of {longest} characters; at most "
            f"{limits.max_metadata_value_chars} (setting max_metadata_value_chars)",
        )
        return
    size = sum(len(text.encode()) for text in texts)
    if size > limits.max_metadata_bytes:
        violations.add(
            field,
            f"carries {size} bytes of keys and values; at most {limits.max_metadata_bytes} "
            "(setting max_metadata_bytes)",
        )


@dataclass(frozen=True)
class ReplyLimits:
    """How large a reply carrying documents (a search reply, an answer with sources) may be."""

    max_reply_bytes: int = setting(
        3 * 1024 * 1024 + 512 * 1024,
        "max_reply_bytes",
        "Largest reply carrying documents (a retriever's Search reply; the gateway's answer "
        "with its sources). Past it the documents are trimmed (texts shortened first, then "
        "the lowest-ranked dropped) and the reply says so; the query never fails for it. "
        "Keep it below your clients' receive limit (gRPC's default is 4 MiB).",
        unit="bytes",
        minimum=64 * 1024,
        maximum=32 * 1024 * 1024,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Trimmed:
    """The documents that fit, and what was cut to make them fit."""

    documents: list[common_pb2.ScoredDocument]
    shortened: int  # texts cut
    dropped: int  # documents left out (from the tail: the lowest-ranked)
    budget_bytes: int

    @property
    def trimmed(self) -> bool:
        return bool(self.shortened or self.dropped)

    def note(self) -> str:
        """One phrase for a receipt's detail ("" when nothing was cut)."""
        if not self.trimmed:
            return ""
        parts = []
        if self.shortened:
            parts.append(f"{self.shortened} texts shortened")
        if self.dropped:
            total = len(self.documents) + self.dropped
            parts.append(f"{self.dropped} of {total} sources dropped")
        return f"sources trimmed to fit {self.budget_bytes} bytes: {', '.join(parts)}"


def trim_documents(documents: list[common_pb2.ScoredDocument], budget_bytes: int) -> Trimmed:
    """Fits `documents` (best first) into `budget_bytes` of encoded size.

    Texts are shortened first, all to one common length (the longest are cut, the short
    ones stay whole), but to no less than MIN_TRIMMED_TEXT_BYTES; if that is not enough,
    documents are dropped from the tail. The input messages are not changed.
    """
    texts = [d.document.text.encode() for d in documents]
    # Bytes of each entry other than its text (metadata, id, score, framing).
    rest = [d.ByteSize() + FRAMING_BYTES - len(t) for d, t in zip(documents, texts, strict=True)]
    mark = len(TRIM_MARK.encode())

    def total(cap: int) -> int:
        return sum(
            r + (len(t) if len(t) <= cap else cap + mark) for r, t in zip(rest, texts, strict=True)
        )

    longest = max(map(len, texts), default=0)
    if total(longest) <= budget_bytes:
        return Trimmed(list(documents), 0, 0, budget_bytes)
    # The largest common text length that fits (binary search; total() grows with cap).
    low, high = MIN_TRIMMED_TEXT_BYTES, longest
    while low < high:
        middle = (low + high + 1) // 2
        if total(middle) <= budget_bytes:
            low = middle
        else:
            high = middle - 1
    cap = low
    kept: list[common_pb2.ScoredDocument] = []
    shortened = 0
    used = 0
    for document, text, other in zip(documents, texts, rest, strict=True):
        size = other + (len(text) if len(text) <= cap else cap + mark)
        if used + size > budget_bytes:
            break  # every later document is ranked lower: drop them all
        used += size
        copy = common_pb2.ScoredDocument()
        copy.CopyFrom(document)
        if len(text) > cap:
            copy.document.text = text[:cap].decode("utf-8", "ignore") + TRIM_MARK
            shortened += 1
        kept.append(copy)
    return Trimmed(kept, shortened, len(documents) - len(kept), budget_bytes)
