"""The opt-in retry does what the server asks, inside the deadline, and nothing else.

Time is a fake clock that moves only when the client sleeps, so no test waits.
"""

from __future__ import annotations

import grpc
import pytest
from client_fakes import FakeAioChannel, FakeChannel, FakeRpcError, FakeTime, bad_request, shed

import harag
from harag.errors import error_from_rpc
from harag.retry import RetryPolicy
from harag.v1 import gateway_pb2

ANSWER = gateway_pb2.QueryResponse(answer="BM25 ranks documents [1]", request_id="r1")
NO_JITTER = RetryPolicy(max_attempts=3, jitter=0.0)


def decide(policy: RetryPolicy, rpc_error: FakeRpcError, attempt: int = 1, remaining=10.0):
    return policy.decide(error_from_rpc(rpc_error), attempt, remaining, random_01=0.5)


def test_shed_call_is_retried_after_the_advised_delay_plus_jitter():
    decision = decide(RetryPolicy(jitter=0.2), shed(0.5))
    assert decision.retry and decision.delay_s == pytest.approx(0.5 * 1.1)


def test_callers_mistake_is_never_retried():
    decision = decide(NO_JITTER, bad_request("top_k", "must be within 1..50"))
    assert not decision.retry and "INVALID_ARGUMENT" in decision.reason


def test_retryable_code_without_retry_info_is_not_retried_by_default():
    decision = decide(NO_JITTER, FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect failed"))
    assert not decision.retry and "without RetryInfo" in decision.reason


def test_unavailable_backoff_opts_in_to_retrying_an_unreachable_gateway():
    policy = RetryPolicy(max_attempts=5, jitter=0.0, unavailable_backoff_s=0.1)
    unreachable = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect failed")
    delays = [decide(policy, unreachable, attempt).delay_s for attempt in (1, 2, 3)]
    assert delays == pytest.approx([0.1, 0.2, 0.4])


def test_no_retry_when_the_wait_would_pass_the_deadline():
    decision = decide(NO_JITTER, shed(2.0), remaining=1.5)
    assert not decision.retry and "deadline" in decision.reason


def test_no_retry_when_the_server_asks_for_a_longer_wait_than_allowed():
    decision = decide(RetryPolicy(max_delay_s=1.0), shed(5.0), remaining=None)
    assert not decision.retry and "max_delay_s" in decision.reason


def test_attempts_are_bounded():
    assert decide(NO_JITTER, shed(0.1), attempt=2).retry
    assert not decide(NO_JITTER, shed(0.1), attempt=3).retry


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"jitter": 1.5},
        {"max_delay_s": -1.0},
        {"unavailable_backoff_s": 0.0},
        {"retryable_codes": frozenset({grpc.StatusCode.INVALID_ARGUMENT})},
    ],
)
def test_a_policy_that_cannot_make_sense_is_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def sync_client(channel: FakeChannel, time: FakeTime, **kwargs) -> harag.Client:
    return harag.Client(
        channel=channel, clock=time.clock, sleep=time.sleep, random_01=lambda: 0.0, **kwargs
    )


def test_client_retries_a_shed_query_and_returns_the_answer():
    time = FakeTime()
    channel = FakeChannel({"Query": [shed(0.2), shed(0.3), ANSWER]})
    client = sync_client(channel, time, retry=NO_JITTER, timeout=5.0)
    assert client.query("What is BM25?") == ANSWER
    assert time.sleeps == pytest.approx([0.2, 0.3])
    # The deadline covers the whole call: each attempt gets only what is left.
    assert [s.timeout for s in channel.sent] == pytest.approx([5.0, 4.8, 4.5])


def test_client_without_retry_policy_raises_at_once():
    time = FakeTime()
    channel = FakeChannel({"Query": [shed(0.2), ANSWER]})
    with pytest.raises(harag.ResourceExhausted):
        sync_client(channel, time).query("What is BM25?")
    assert time.sleeps == [] and len(channel.sent) == 1


def test_per_call_retry_overrides_the_client_default():
    time = FakeTime()
    channel = FakeChannel({"Query": [shed(0.2), ANSWER]})
    client = sync_client(channel, time)
    assert client.query("What is BM25?", retry=NO_JITTER) == ANSWER


def test_exhausted_retries_raise_the_last_error_with_the_attempt_count():
    time = FakeTime()
    channel = FakeChannel({"Ingest": [shed(0.1), shed(0.1), shed(0.1)]})
    client = sync_client(channel, time, retry=NO_JITTER)
    with pytest.raises(harag.ResourceExhausted) as caught:
        client.ingest([{"id": "a", "text": "x"}])
    assert caught.value.attempts == 3 and len(time.sleeps) == 2


def test_retry_stops_when_the_next_wait_would_pass_the_deadline():
    time = FakeTime()
    channel = FakeChannel({"Query": [shed(0.4), shed(0.4), ANSWER]})
    client = sync_client(channel, time, retry=NO_JITTER, timeout=0.6)
    with pytest.raises(harag.ResourceExhausted) as caught:
        client.query("What is BM25?")
    assert time.sleeps == pytest.approx([0.4]) and caught.value.attempts == 2


def test_stream_is_retried_only_before_its_first_event():
    time = FakeTime()
    sources = gateway_pb2.StreamQueryResponse(sources=gateway_pb2.SourcesEvent())
    chunk = gateway_pb2.StreamQueryResponse(chunk="BM25")
    final = gateway_pb2.StreamQueryResponse(final=gateway_pb2.FinalEvent(answer="BM25"))
    channel = FakeChannel(
        {
            "StreamQuery": [
                [shed(0.1)],
                [sources, FakeRpcError(grpc.StatusCode.UNAVAILABLE, "gone"), chunk],
                [sources, chunk, final],
            ]
        }
    )
    client = sync_client(channel, time, retry=RetryPolicy(jitter=0.0, unavailable_backoff_s=0.1))
    events = client.stream_query("What is BM25?")
    assert isinstance(next(events), harag.SourcesEvent)
    # Having yielded an event, a retry would repeat it: the error goes to the caller.
    with pytest.raises(harag.Unavailable):
        next(events)
    assert time.sleeps == pytest.approx([0.1])


async def test_async_client_retries_a_shed_query_on_the_fake_clock():
    time = FakeTime()
    channel = FakeAioChannel({"Query": [shed(0.2), ANSWER]})
    client = harag.AsyncClient(
        channel=channel,
        retry=NO_JITTER,
        timeout=2.0,
        clock=time.clock,
        sleep=time.async_sleep,
        random_01=lambda: 0.0,
    )
    assert await client.query("What is BM25?") == ANSWER
    assert time.sleeps == pytest.approx([0.2])
    assert [s.timeout for s in channel.sent] == pytest.approx([2.0, 1.8])


async def test_async_client_never_retries_invalid_argument():
    time = FakeTime()
    channel = FakeAioChannel({"Query": [bad_request("query", "must not be empty"), ANSWER]})
    client = harag.AsyncClient(
        channel=channel, retry=NO_JITTER, clock=time.clock, sleep=time.async_sleep
    )
    with pytest.raises(harag.InvalidArgument):
        await client.query("")
    assert time.sleeps == [] and len(channel.sent) == 1
