"""A model provider that rejects our key, is out of quota or lost the model answers
FAILED_PRECONDITION with a stable ErrorInfo reason: the breaker counts it (the upstream can
serve nobody until an operator acts), the call is never retried, and the chain moves on.
Other FAILED_PRECONDITIONs (about the request) stay unrecorded. All on a fake clock."""

from __future__ import annotations

import random

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.resilience.breaker import BreakerConfig, CircuitBreaker
from gateway.resilience.breaker_types import (
    DEFAULT_RECORDED_FAILURE_REASONS,
    CircuitState,
    is_recorded_failure,
)
from gateway.resilience.clock import FakeClock
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Attempts, CallFailed, Guard, Timing, guarded_call
from gateway.resilience.outcome import error_reason
from gateway.resilience.retry import RetryPolicy

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def rpc_error(code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    """An error as a generator process sends it: google.rpc.Status with an ErrorInfo."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="harag.v1"))
    status = status_pb2.Status(code=code.value[0], message=reason, details=[detail])
    trailers = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details=reason)


class Provider:
    """Fails every attempt with `error` after 10 ms of fake time."""

    def __init__(self, clock: FakeClock, error: grpc.aio.AioRpcError) -> None:
        self.clock, self.error, self.calls = clock, error, 0

    async def __call__(self, timeout_s: float) -> str:
        self.calls += 1
        await self.clock.sleep(0.01)
        raise self.error


async def failed_calls(reason: str, calls: int) -> tuple[CircuitBreaker, Provider]:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "generator-primary",
        BreakerConfig(minimum_calls=3, window_size=3, wait_in_open_s=5.0, wait_jitter=0.0),
        clock=clock,
    )
    guard = Guard(
        "generator-primary",
        0,
        breaker=breaker,
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=0.1),
    )
    provider = Provider(clock, rpc_error(FAILED_PRECONDITION, reason))
    for _ in range(calls):
        timing = Timing(Deadline.after(5.0, clock), 0.0, min_attempt_s=0.05, per_try_cap_s=2.0)
        with pytest.raises(CallFailed) as failed:
            await clock.drive(
                guarded_call(guard, provider, timing, Attempts(), rng=random.Random(1), clock=clock)
            )
        assert failed.value.outcome == "FAILED_PRECONDITION"
    return breaker, provider


@pytest.mark.parametrize("reason", ["PROVIDER_AUTH", "PROVIDER_QUOTA", "PROVIDER_MODEL_NOT_FOUND"])
async def test_a_configuration_failure_opens_the_breaker_and_is_never_retried(reason: str) -> None:
    breaker, provider = await failed_calls(reason, calls=3)
    assert provider.calls == 3  # one attempt per call: no retry
    assert breaker.state is CircuitState.OPEN


async def test_a_failed_precondition_about_the_request_is_not_counted() -> None:
    breaker, provider = await failed_calls("UNKNOWN_MODEL", calls=5)
    assert provider.calls == 5
    assert breaker.state is CircuitState.CLOSED


def test_the_reason_is_read_from_the_status_details_and_only_there() -> None:
    assert error_reason(rpc_error(FAILED_PRECONDITION, "PROVIDER_QUOTA")) == "PROVIDER_QUOTA"
    bare = grpc.aio.AioRpcError(
        FAILED_PRECONDITION, grpc.aio.Metadata(), grpc.aio.Metadata(), details="PROVIDER_AUTH"
    )
    assert error_reason(bare) is None  # a message is never parsed
    garbled = grpc.aio.AioRpcError(
        FAILED_PRECONDITION,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(("grpc-status-details-bin", b"\xff\xff")),
    )
    assert error_reason(garbled) is None
    assert error_reason(ValueError("x")) is None


def test_which_outcomes_are_recorded() -> None:
    for reason in DEFAULT_RECORDED_FAILURE_REASONS:
        assert is_recorded_failure(FAILED_PRECONDITION, reason)
        assert not is_recorded_failure(grpc.StatusCode.INVALID_ARGUMENT, reason)
        assert not is_recorded_failure(grpc.StatusCode.OK, reason)
    assert is_recorded_failure(grpc.StatusCode.UNAVAILABLE, None)
    assert not is_recorded_failure(FAILED_PRECONDITION, None)
    assert code_pb2.FAILED_PRECONDITION == FAILED_PRECONDITION.value[0]
