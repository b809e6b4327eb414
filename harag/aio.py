"""The asyncio client of the gateway's public API: `harag.Client`, awaitable.

    async with harag.AsyncClient("127.0.0.1:50051", timeout=5) as client:
        reply = await client.query("What is BM25?", top_k=3)
        async for event in client.stream_query("What is BM25?"):
            ...

Same methods, arguments, errors and retry rules as the sync `harag.Client`. Create and use
one client within one event loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TypeVar

import grpc

from harag import _calls
from harag._calls import UNSET, Metadata, MetadataPairs, Unset
from harag.errors import error_from_rpc
from harag.retry import CallBudget, RetryPolicy
from harag.types import DocumentLike, Filters, StreamEvent, stream_event
from harag.v1 import common_pb2, gateway_pb2

_Response = TypeVar("_Response")


class AsyncClient:
    """An asyncio client for the gateway; see `harag.Client` for the arguments.

    `channel` is a `grpc.aio.Channel` here, and `sleep` an async function.
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
        channel: grpc.aio.Channel | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random_01: Callable[[], float] = random.random,
    ) -> None:
        self._defaults = _calls.ClientDefaults.build(timeout, retry, metadata, api_key)
        self._clock, self._sleep, self._random = clock, sleep, random_01
        self._owns_channel = channel is None
        if channel is None:
            channel = (
                grpc.aio.secure_channel(target, credentials, options=list(options))
                if credentials is not None
                else grpc.aio.insecure_channel(target, options=list(options))
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

    async def query(
        self,
        query: str,
        *,
        top_k: int | None = None,
        filters: Filters | None = None,
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> gateway_pb2.QueryResponse:
        """Answers `query`; see `harag.Client.query`."""
        request = _calls.query_request(query, top_k, filters)

        async def call(t: float | None, md: MetadataPairs) -> gateway_pb2.QueryResponse:
            return await self._query(request, timeout=t, metadata=md)

        return await self._unary(
            call, timeout, retry, self._defaults.call_metadata(metadata, request_id)
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
    ) -> AsyncIterator[StreamEvent]:
        """Streams the answer; see `harag.Client.stream_query`.

        To stop early and cancel the call at once, close the iterator:
        `async with contextlib.aclosing(client.stream_query(q)) as events: ...`.
        """
        # Arguments are checked now, so a mistake raises here rather than at the first event.
        request = _calls.stream_query_request(query, top_k, filters)
        call_metadata = self._defaults.call_metadata(metadata, request_id)
        timeout_s = self._defaults.timeout(timeout)
        policy = self._defaults.retry_policy(retry)
        return self._stream(request, call_metadata, timeout_s, policy)

    async def _stream(
        self,
        request: gateway_pb2.StreamQueryRequest,
        call_metadata: MetadataPairs,
        timeout_s: float | None,
        policy: RetryPolicy | None,
    ) -> AsyncIterator[StreamEvent]:
        # The deadline runs from the first read, when the call is made.
        budget = CallBudget(timeout_s, policy, self._clock, self._random)
        while True:
            stream = self._stream_query(
                request, timeout=budget.next_timeout(), metadata=call_metadata
            )
            received = False
            try:
                async for message in stream:
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
            await self._sleep(delay)

    async def ingest(
        self,
        documents: Iterable[DocumentLike],
        *,
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> gateway_pb2.IngestResponse:
        """Embeds and stores documents; see `harag.Client.ingest`."""
        request = _calls.ingest_request(documents)

        async def call(t: float | None, md: MetadataPairs) -> gateway_pb2.IngestResponse:
            return await self._ingest(request, timeout=t, metadata=md)

        return await self._unary(
            call, timeout, retry, self._defaults.call_metadata(metadata, request_id)
        )

    async def start_ingest_job(
        self,
        documents: Iterable[DocumentLike],
        *,
        batch_size: int = _calls.JOB_BATCH_DOCUMENTS,
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> gateway_pb2.StartIngestJobResponse:
        """Starts an asynchronous ingest job; see `harag.Client.start_ingest_job`."""
        requests = _calls.job_requests(documents, batch_size)

        async def call(t: float | None, md: MetadataPairs) -> gateway_pb2.StartIngestJobResponse:
            return await self._start_job(iter(requests), timeout=t, metadata=md)

        return await self._unary(
            call, timeout, retry, self._defaults.call_metadata(metadata, request_id)
        )

    async def get_ingest_job(
        self,
        job_id: str,
        *,
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> gateway_pb2.GetIngestJobResponse:
        """An ingest job's progress; see `harag.Client.get_ingest_job`."""
        request = gateway_pb2.GetIngestJobRequest(job_id=job_id)

        async def call(t: float | None, md: MetadataPairs) -> gateway_pb2.GetIngestJobResponse:
            return await self._get_job(request, timeout=t, metadata=md)

        return await self._unary(call, timeout, retry, self._defaults.call_metadata(metadata, None))

    async def submit_feedback(
        self,
        request_id: str,
        rating: int,
        comment: str | None = None,
        *,
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> gateway_pb2.SubmitFeedbackResponse:
        """Rates an answer; see `harag.Client.submit_feedback`."""
        request = _calls.feedback_request(request_id, rating, comment)

        async def call(t: float | None, md: MetadataPairs) -> gateway_pb2.SubmitFeedbackResponse:
            return await self._feedback(request, timeout=t, metadata=md)

        return await self._unary(call, timeout, retry, self._defaults.call_metadata(metadata, None))

    async def delete_documents(
        self,
        ids: Iterable[str],
        *,
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
        request_id: str | None = None,
    ) -> gateway_pb2.DeleteDocumentsResponse:
        """Removes every chunk of these documents; see `harag.Client.delete_documents`."""
        request = _calls.delete_request(ids)

        async def call(t: float | None, md: MetadataPairs) -> gateway_pb2.DeleteDocumentsResponse:
            return await self._delete(request, timeout=t, metadata=md)

        return await self._unary(
            call, timeout, retry, self._defaults.call_metadata(metadata, request_id)
        )

    async def list_documents(
        self,
        *,
        page_size: int | None = None,
        page_token: str = "",
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> gateway_pb2.ListDocumentsResponse:
        """One page of stored documents; see `harag.Client.list_documents`."""
        request = _calls.list_request(page_size, page_token)

        async def call(t: float | None, md: MetadataPairs) -> gateway_pb2.ListDocumentsResponse:
            return await self._list(request, timeout=t, metadata=md)

        return await self._unary(call, timeout, retry, self._defaults.call_metadata(metadata, None))

    async def iter_documents(
        self,
        *,
        page_size: int | None = None,
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline of each page)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> AsyncIterator[common_pb2.StoredDocument]:
        """Every stored document, in id order, fetching page after page."""
        token = ""
        while True:
            page = await self.list_documents(
                page_size=page_size,
                page_token=token,
                timeout=timeout,
                retry=retry,
                metadata=metadata,
            )
            for document in page.documents:
                yield document
            token = page.next_page_token
            if not token:
                return

    async def get_system_health(
        self,
        *,
        timeout: float | Unset | None = UNSET,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None = UNSET,
        metadata: Metadata | None = None,
    ) -> gateway_pb2.GetSystemHealthResponse:
        """The gateway's view of every upstream; see `harag.Client.get_system_health`."""
        request = gateway_pb2.GetSystemHealthRequest()

        async def call(t: float | None, md: MetadataPairs) -> gateway_pb2.GetSystemHealthResponse:
            return await self._health(request, timeout=t, metadata=md)

        return await self._unary(call, timeout, retry, self._defaults.call_metadata(metadata, None))

    async def close(self) -> None:
        """Closes the channel (unless it was passed in); calls in flight are cancelled."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _budget(
        self, timeout: float | Unset | None, retry: RetryPolicy | Unset | None
    ) -> CallBudget:
        return CallBudget(
            self._defaults.timeout(timeout),
            self._defaults.retry_policy(retry),
            self._clock,
            self._random,
        )

    async def _unary(
        self,
        call: Callable[[float | None, MetadataPairs], Awaitable[_Response]],
        timeout: float | Unset | None,  # noqa: ASYNC109 (the gRPC deadline)
        retry: RetryPolicy | Unset | None,
        metadata: MetadataPairs,
    ) -> _Response:
        budget = self._budget(timeout, retry)
        while True:
            try:
                return await call(budget.next_timeout(), metadata)
            except grpc.RpcError as rpc_error:
                error = error_from_rpc(rpc_error)
                delay = budget.delay_before_retry(error)
                if delay is None:
                    raise error from rpc_error
            await self._sleep(delay)
