"""The synchronous client of the gateway's public API (`harag.v1.RagGatewayService`).

    with harag.Client("127.0.0.1:50051", timeout=5) as client:
        reply = client.query("What is BM25?", top_k=3)

Every method raises a `harag.HaragError` subclass when the call fails; `timeout=` is the
deadline of the whole call (retries included), `metadata=` adds call headers, and
`retry=` opts in to retries the server invites (see `harag.RetryPolicy`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TypeVar

import grpc

from harag import _calls
from harag._calls import UNSET, Metadata, MetadataPairs, Unset
from harag.errors import HaragError, error_from_rpc
from harag.retry import CallBudget, RetryPolicy
from harag.types import DocumentLike, Filters, StreamEvent, stream_event
from harag.v1 import common_pb2, gateway_pb2

_Response = TypeVar("_Response")


class Client:
    """A blocking client for the gateway. Thread-safe; one per process is plenty.

    Args:
        target: the gateway's "host:port" (default 127.0.0.1:50051).
        timeout: default deadline of a call in seconds (None: no deadline); each method
            takes `timeout=` to override it.
        retry: a RetryPolicy to retry what the server invites (default: no retries).
        metadata: headers sent with every call, e.g. {"x-tenant": "acme"}.
        api_key: sent as `authorization: Bearer <api_key>` with every call (default: the
            environment variable HARAG_API_KEY; none when it is unset). A gateway with auth
            on answers UNAUTHENTICATED without one, PERMISSION_DENIED without the scope.
        credentials: `grpc.ssl_channel_credentials(...)` for a TLS channel (default plaintext).
        options: extra grpcio channel arguments, e.g. [("grpc.max_receive_message_length", n)].
        channel: an existing channel to use instead of dialling `target` (the client
            then does not close it).
        clock, sleep, random_01: time and randomness sources of the retry loop
            (injectable so tests run without sleeping).
    """

    def __init__(
        self,
        target: str = _calls.DEFAULT_TARGET,
        *,
        timeout: float | None = _calls.DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        metadata: Metadata | None = None,
        api_key: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, str | int]] = (),
        channel: grpc.Channel | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random_01: Callable[[], float] = random.random,
    ) -> None:
        self._defaults = _calls.ClientDefaults.build(timeout, retry, metadata, api_key)
        self._clock, self._sleep, self._random = clock, sleep, random_01
        self._owns_channel = channel is None
        if channel is None:
            channel = (
                grpc.secure_channel(target, credentials, options=list(options))
                if credentials is not None
                else grpc.insecure_channel(target, options=list(options))
            )
        self._channel = channel
        self._query = channel.unary_unary(
            _calls.QUERY,
            request_serializer=gateway_pb2.QueryRequest.SerializeToString,
            response_deserializer=gateway_pb2.QueryResponse.FromString,
        )
        self._stream_query = channel.unary_stream(
            _calls.STREAM_QUERY,
            request_serializer=gateway_pb2.StreamQueryRequest.SerializeToString,
            response_deserializer=gateway_pb2.StreamQueryResponse.FromString,
        )
        self._ingest = channel.unary_unary(
            _calls.INGEST,
            request_serializer=gateway_pb2.IngestRequest.SerializeToString,
            response_deserializer=gateway_pb2.IngestResponse.FromString,
        )
        self._start_job = channel.stream_unary(
            _calls.START_INGEST_JOB,
            request_serializer=gateway_pb2.StartIngestJobRequest.SerializeToString,
            response_deserializer=gateway_pb2.StartIngestJobResponse.FromString,
        )
        self._get_job = channel.unary_unary(
            _calls.GET_INGEST_JOB,
            request_serializer=gateway_pb2.GetIngestJobRequest.SerializeToString,
            response_deserializer=gateway_pb2.GetIngestJobResponse.FromString,
        )
        self._feedback = channel.unary_unary(
            _calls.SUBMIT_FEEDBACK,
            request_serializer=gateway_pb2.SubmitFeedbackRequest.SerializeToString,
            response_deserializer=gateway_pb2.SubmitFeedbackResponse.FromString,
        )
        self._delete = channel.unary_unary(
            _calls.DELETE_DOCUMENTS,
            request_serializer=gateway_pb2.DeleteDocumentsRequest.SerializeToString,
            response_deserializer=gateway_pb2.DeleteDocumentsResponse.FromString,
        )
        self._list = channel.unary_unary(
            _calls.LIST_DOCUMENTS,
            request_serializer=gateway_pb2.ListDocumentsRequest.SerializeToString,
            response_deserializer=gateway_pb2.ListDocumentsResponse.FromString,
        )
        self._health = channel.unary_unary(
            _calls.GET_SYSTEM_HEALTH,
            request_serializer=gateway_pb2.GetSystemHealthRequest.SerializeToString,
            response_deserializer=gateway_pb2.GetSystemHealthResponse.FromString,
        )

    def query(
        self,
        query: str,
        *,
        top_k: int | None = None,
        filters: Filters | None = None,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> gateway_pb2.QueryResponse:
        """Answers `query` from the corpus: the answer, its sources and the stage receipt.

        `top_k` is 1..50 (server default 4); `filters` restrict retrieval, e.g.
        {"source": "wiki"}; `request_id` is echoed in the reply and in every log line.
        """
        request = _calls.query_request(query, top_k, filters)
        return self._unary(
            lambda t, md: self._query(request, timeout=t, metadata=md),
            timeout,
            retry,
            self._defaults.call_metadata(metadata, request_id),
        )

    def stream_query(
        self,
        query: str,
        *,
        top_k: int | None = None,
        filters: Filters | None = None,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Streams the answer: one SourcesEvent, AnswerChunks as generated, one FinalEvent.

        A `Withdrawn` event may come between chunks (a generator failed mid-stream and the
        gateway failed over): drop the chunks received so far; the answer restarts after it.

        The call starts when iteration starts; stopping early (break, close()) cancels it.
        A retry happens only before the first event arrived, so no event is seen twice.
        """
        # Arguments are checked now, so a mistake raises here rather than at the first event.
        request = _calls.stream_query_request(query, top_k, filters)
        call_metadata = self._defaults.call_metadata(metadata, request_id)
        timeout_s = self._defaults.timeout(timeout)
        policy = self._defaults.retry_policy(retry)
        return self._stream(request, call_metadata, timeout_s, policy)

    def _stream(
        self,
        request: gateway_pb2.StreamQueryRequest,
        call_metadata: MetadataPairs,
        timeout_s: float | None,
        policy: RetryPolicy | None,
    ) -> Iterator[StreamEvent]:
        # The deadline runs from the first read, when the call is made.
        budget = CallBudget(timeout_s, policy, self._clock, self._random)
        while True:
            stream = self._stream_query(
                request, timeout=budget.next_timeout(), metadata=call_metadata
            )
            received = False
            try:
                for message in stream:
                    event = stream_event(message)
                    if event is not None:
                        received = True
                        yield event
                return
            except grpc.RpcError as rpc_error:
                error = error_from_rpc(rpc_error)
                delay = None if received else budget.delay_before_retry(error)
                error.attempts = budget.attempts
                if delay is None:
                    raise error from rpc_error
            finally:
                stream.cancel()
            self._sleep(delay)

    def ingest(
        self,
        documents: Iterable[DocumentLike],
        *,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> gateway_pb2.IngestResponse:
        """Embeds and stores documents (at most 512 per call) and reports each one.

        `documents` are `Document` messages, dicts with "text" and optional "id" and
        "metadata", or objects with those attributes. One bad document does not fail the
        others: look at `reply.results[i].status` (INGEST_STATUS_ACCEPTED, _PARTIAL,
        _FAILED) and `.reason`. Re-ingesting an id replaces it, so a retry is safe when
        every document has an id.
        """
        request = _calls.ingest_request(documents)
        return self._unary(
            lambda t, md: self._ingest(request, timeout=t, metadata=md),
            timeout,
            retry,
            self._defaults.call_metadata(metadata, request_id),
        )

    def start_ingest_job(
        self,
        documents: Iterable[DocumentLike],
        *,
        batch_size: int = _calls.JOB_BATCH_DOCUMENTS,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> gateway_pb2.StartIngestJobResponse:
        """Starts an asynchronous ingest job for a large corpus (sent in batches of
        `batch_size`) and returns its `job_id` at once; watch it with `get_ingest_job`.
        A retry starts a second job (harmless: documents stored already are UNCHANGED)."""
        requests = _calls.job_requests(documents, batch_size)
        return self._unary(
            lambda t, md: self._start_job(iter(requests), timeout=t, metadata=md),
            timeout,
            retry,
            self._defaults.call_metadata(metadata, request_id),
        )

    def get_ingest_job(
        self,
        job_id: str,
        *,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> gateway_pb2.GetIngestJobResponse:
        """An ingest job's progress: state (RUNNING, INDEXING, DONE, INTERRUPTED), documents
        accepted, embedded, unchanged and failed, and per retriever queued/indexed/failed."""
        request = gateway_pb2.GetIngestJobRequest(job_id=job_id)
        return self._unary(
            lambda t, md: self._get_job(request, timeout=t, metadata=md),
            timeout,
            retry,
            self._defaults.call_metadata(metadata, None),
        )

    def submit_feedback(
        self,
        request_id: str,
        rating: int,
        comment: str | None = None,
        *,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> gateway_pb2.SubmitFeedbackResponse:
        """Rates the answer with `request_id` (a QueryResponse's or FinalEvent's) from 1 to 5,
        with an optional comment; rating it again replaces the rating, so a retry is safe.
        NotFound when the gateway no longer remembers the answer; InvalidArgument for a
        rating outside 1..5 or a comment too long."""
        request = _calls.feedback_request(request_id, rating, comment)
        return self._unary(
            lambda t, md: self._feedback(request, timeout=t, metadata=md),
            timeout,
            retry,
            self._defaults.call_metadata(metadata, None),
        )

    def delete_documents(
        self,
        ids: Iterable[str],
        *,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> gateway_pb2.DeleteDocumentsResponse:
        """Removes every chunk of the documents with these ids from every retriever, and the
        cached answers that cited them. One DeleteResult per id, in order: `found` says
        whether any retriever held it, `missing` names retrievers that could not be reached."""
        request = _calls.delete_request(ids)
        return self._unary(
            lambda t, md: self._delete(request, timeout=t, metadata=md),
            timeout,
            retry,
            self._defaults.call_metadata(metadata, request_id),
        )

    def list_documents(
        self,
        *,
        page_size: int | None = None,
        page_token: str = "",
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> gateway_pb2.ListDocumentsResponse:
        """One page of stored documents in id order (id, title, chunks, content hash); pass
        the reply's `next_page_token` for the next (empty on the last page)."""
        request = _calls.list_request(page_size, page_token)
        return self._unary(
            lambda t, md: self._list(request, timeout=t, metadata=md),
            timeout,
            retry,
            self._defaults.call_metadata(metadata, None),
        )

    def iter_documents(
        self,
        *,
        page_size: int | None = None,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> Iterator[common_pb2.StoredDocument]:
        """Every stored document, in id order, fetching page after page (`timeout` is each
        page's deadline)."""
        token = ""
        while True:
            page = self.list_documents(
                page_size=page_size,
                page_token=token,
                timeout=timeout,
                retry=retry,
                metadata=metadata,
            )
            yield from page.documents
            token = page.next_page_token
            if not token:
                return

    def get_system_health(
        self,
        *,
        timeout: float | Unset | None = UNSET,
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> gateway_pb2.GetSystemHealthResponse:
        """The gateway's view of every upstream: health, breaker state, latency."""
        request = gateway_pb2.GetSystemHealthRequest()
        return self._unary(
            lambda t, md: self._health(request, timeout=t, metadata=md),
            timeout,
            retry,
            self._defaults.call_metadata(metadata, None),
        )

    def close(self) -> None:
        """Closes the channel (unless it was passed in); calls in flight are cancelled."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _budget(
        self, timeout: float | Unset | None, retry: RetryPolicy | Unset | None
    ) -> CallBudget:
        return CallBudget(
            self._defaults.timeout(timeout),
            self._defaults.retry_policy(retry),
            self._clock,
            self._random,
        )

    def _unary(
        self,
        call: Callable[[float | None, MetadataPairs], _Response],
        timeout: float | Unset | None,
        retry: RetryPolicy | Unset | None,
        metadata: MetadataPairs,
    ) -> _Response:
        budget = self._budget(timeout, retry)
        while True:
            try:
                return call(budget.next_timeout(), metadata)
            except grpc.RpcError as rpc_error:
                error: HaragError = error_from_rpc(rpc_error)
                delay = budget.delay_before_retry(error)
                if delay is None:
                    raise error from rpc_error
            self._sleep(delay)
