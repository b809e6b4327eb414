"""What the sync and the asyncio client share: call options, metadata and request building."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from harag.retry import RetryPolicy
from harag.types import DocumentLike, Filters, to_document, to_filters
from harag.v1 import gateway_pb2

SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["RagGatewayService"].full_name
QUERY = f"/{SERVICE}/Query"
STREAM_QUERY = f"/{SERVICE}/StreamQuery"
INGEST = f"/{SERVICE}/Ingest"
DELETE_DOCUMENTS = f"/{SERVICE}/DeleteDocuments"
LIST_DOCUMENTS = f"/{SERVICE}/ListDocuments"
GET_SYSTEM_HEALTH = f"/{SERVICE}/GetSystemHealth"
START_INGEST_JOB = f"/{SERVICE}/StartIngestJob"
GET_INGEST_JOB = f"/{SERVICE}/GetIngestJob"
SUBMIT_FEEDBACK = f"/{SERVICE}/SubmitFeedback"
JOB_BATCH_DOCUMENTS = 500

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 10.0
AUTHORIZATION = "authorization"
API_KEY_ENV = "HARAG_API_KEY"
REQUEST_ID = "x-request-id"

Metadata: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]
"""Call metadata (gRPC headers): a mapping or (key, value) pairs; keys are lower-cased."""

MetadataPairs: TypeAlias = tuple[tuple[str, str], ...]


class Unset(enum.Enum):
    """Marks a per-call option the caller left out, so the client's default applies
    (None is a value of its own: no deadline, no retry)."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


def metadata_pairs(metadata: Metadata | None) -> MetadataPairs:
    if metadata is None:
        return ()
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    pairs = []
    for key, value in items:
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata keys and values must be str, got {key!r}: {value!r}")
        pairs.append((key.lower(), value))
    return tuple(pairs)


@dataclass(frozen=True)
class ClientDefaults:
    """A client's defaults for every call; each may be overridden per call."""

    timeout_s: float | None
    retry: RetryPolicy | None
    metadata: MetadataPairs

    @staticmethod
    def build(
        timeout: float | None,
        retry: RetryPolicy | None,
        metadata: Metadata | None,
        api_key: str | None,
    ) -> ClientDefaults:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be above 0 seconds or None, got {timeout}")
        pairs = metadata_pairs(metadata)
        if api_key is None:
            api_key = os.environ.get(API_KEY_ENV) or None
        if api_key is not None:
            if not api_key or any(c.isspace() for c in api_key):
                raise ValueError("api_key must be a non-empty string without whitespace")
            # The gateway reads a bearer token (or x-api-key); one key, so no x-api-key
            # that could disagree with it.
            pairs = (
                *[p for p in pairs if p[0] != AUTHORIZATION],
                (AUTHORIZATION, f"Bearer {api_key}"),
            )
        return ClientDefaults(timeout, retry, pairs)

    def timeout(self, override: float | Unset | None) -> float | None:
        if isinstance(override, Unset):
            return self.timeout_s
        if override is not None and not override > 0:
            raise ValueError(f"timeout must be above 0 seconds or None, got {override}")
        return override

    def retry_policy(self, override: RetryPolicy | Unset | None) -> RetryPolicy | None:
        return self.retry if isinstance(override, Unset) else override

    def call_metadata(self, extra: Metadata | None, request_id: str | None) -> MetadataPairs:
        """Client metadata, then the call's own: a key the call sets replaces the client's."""
        own = metadata_pairs(extra)
        if request_id is not None:
            own = (*[p for p in own if p[0] != REQUEST_ID], (REQUEST_ID, request_id))
        replaced = {key for key, _ in own}
        return (*[p for p in self.metadata if p[0] not in replaced], *own)


def query_request(
    query: str, top_k: int | None, filters: Filters | None
) -> gateway_pb2.QueryRequest:
    request = gateway_pb2.QueryRequest(query=query, filters=to_filters(filters))
    if top_k is not None:
        request.top_k = top_k
    return request


def stream_query_request(
    query: str, top_k: int | None, filters: Filters | None
) -> gateway_pb2.StreamQueryRequest:
    request = gateway_pb2.StreamQueryRequest(query=query, filters=to_filters(filters))
    if top_k is not None:
        request.top_k = top_k
    return request


def ingest_request(documents: Iterable[DocumentLike]) -> gateway_pb2.IngestRequest:
    if isinstance(documents, (str, bytes, Mapping)):
        raise TypeError("documents must be an iterable of documents, not a single one")
    return gateway_pb2.IngestRequest(
        documents=[to_document(doc, index) for index, doc in enumerate(documents)]
    )


def job_requests(
    documents: Iterable[DocumentLike], batch_size: int = JOB_BATCH_DOCUMENTS
) -> list[gateway_pb2.StartIngestJobRequest]:
    """The job's documents as a stream of batches of at most `batch_size`."""
    if isinstance(documents, (str, bytes, Mapping)):
        raise TypeError("documents must be an iterable of documents, not a single one")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    docs = [to_document(doc, index) for index, doc in enumerate(documents)]
    return [
        gateway_pb2.StartIngestJobRequest(documents=docs[start : start + batch_size])
        for start in range(0, len(docs), batch_size)
    ]


def delete_request(ids: Iterable[str]) -> gateway_pb2.DeleteDocumentsRequest:
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be an iterable of document ids, not a single string")
    out = list(ids)
    for index, doc_id in enumerate(out):
        if not isinstance(doc_id, str) or not doc_id:
            raise TypeError(f"ids[{index}]: must be a non-empty str, got {doc_id!r}")
    return gateway_pb2.DeleteDocumentsRequest(ids=out)


def list_request(page_size: int | None, page_token: str) -> gateway_pb2.ListDocumentsRequest:
    if page_size is not None and not 0 < page_size:
        raise ValueError(f"page_size must be above 0, got {page_size}")
    return gateway_pb2.ListDocumentsRequest(page_size=page_size or 0, page_token=page_token)


def feedback_request(
    request_id: str, rating: int, comment: str | None
) -> gateway_pb2.SubmitFeedbackRequest:
    return gateway_pb2.SubmitFeedbackRequest(request_id=request_id, rating=rating, comment=comment)
