"""GatewayAdminService: list breakers and transition them by hand (operators only).

`check_breaker_action` and `apply_breaker_action` are the one admin logic: the gRPC service
and the status page's POST endpoint (gateway.status.http) both go through them.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from gateway.feedback.metrics import FEEDBACK_METRICS
from gateway.health import breaker_status
from gateway.shared.breaker_sync import DISABLE, FORCE_OPEN, RESET, SharedBreakers
from gateway.shared.redis_link import RedisUnavailable
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import admin_pb2, admin_pb2_grpc
from servicekit.errors import FieldViolations

log = logging.getLogger("harag.gateway")
# The actions an operator can take; anything else (unset, or a number from a newer client)
# is refused rather than read as a reset.
ACTIONS = frozenset(
    {
        admin_pb2.BREAKER_ACTION_FORCE_OPEN,
        admin_pb2.BREAKER_ACTION_DISABLE,
        admin_pb2.BREAKER_ACTION_RESET,
    }
)


def _entry(upstream: Upstream) -> admin_pb2.UpstreamBreaker:
    return admin_pb2.UpstreamBreaker(upstream=upstream.name, breaker=breaker_status(upstream))


def check_breaker_action(
    upstreams: Upstreams, name: str, action: admin_pb2.BreakerAction
) -> tuple[Upstream | None, FieldViolations]:
    """The named upstream and what is wrong with the request (empty when nothing)."""
    upstream = upstreams.by_name(name)
    violations = FieldViolations()
    names = ", ".join(u.name for u in upstreams.all())
    violations.check(upstream is not None, "upstream", f"unknown upstream; one of {names}")
    violations.check(
        action in ACTIONS,
        "action",
        f"is {action}; must be one of "
        + ", ".join(admin_pb2.BreakerAction.Name(a) for a in sorted(ACTIONS)),
    )
    return upstream, violations


def apply_breaker_action(
    upstream: Upstream, action: admin_pb2.BreakerAction
) -> admin_pb2.UpstreamBreaker | None:
    """Transitions the upstream's breaker; None when breakers are off on this gateway."""
    breaker = upstream.guard.breaker
    if breaker is None:
        return None
    if action == admin_pb2.BREAKER_ACTION_FORCE_OPEN:
        breaker.force_open()
    elif action == admin_pb2.BREAKER_ACTION_DISABLE:
        breaker.disable()
    else:
        # A fresh start: the status forgets the recent calls too.
        breaker.reset()
        if upstream.guard.recent is not None:
            upstream.guard.recent.reset()
    return _entry(upstream)


BREAKERS_OFF = "breakers are off on this gateway"
MAX_EVAL_K = 50
MAX_QUESTION_SET_CHARS = 200  # a metric label: keep it short
SHARED_ACTIONS = {
    admin_pb2.BREAKER_ACTION_FORCE_OPEN: FORCE_OPEN,
    admin_pb2.BREAKER_ACTION_DISABLE: DISABLE,
    admin_pb2.BREAKER_ACTION_RESET: RESET,
}


async def share_breaker_action(
    shared: SharedBreakers | None, upstream: str, action: admin_pb2.BreakerAction
) -> None:
    """Sends an operator's action, already applied here, to every other replica (on Redis)."""
    if shared is None or not shared.link.configured:
        return
    try:
        await shared.publish_admin(upstream, SHARED_ACTIONS[action])
    except RedisUnavailable as exc:
        # Applied here; the other replicas keep their own until Redis is back.
        log.warning(
            "breaker action not shared: redis unavailable",
            extra={"upstream": upstream, "action": SHARED_ACTIONS[action], "reason": exc.reason},
        )


class GatewayAdmin(admin_pb2_grpc.GatewayAdminServiceServicer):
    def __init__(self, upstreams: Upstreams, shared: SharedBreakers | None = None) -> None:
        self.upstreams = upstreams
        self.shared = shared  # every replica applies an operator's action (on Redis)

    async def ListBreakers(
        self, request: admin_pb2.ListBreakersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ListBreakersResponse:
        return admin_pb2.ListBreakersResponse(breakers=[_entry(u) for u in self.upstreams.all()])

    async def TransitionBreaker(
        self,
        request: admin_pb2.TransitionBreakerRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.TransitionBreakerResponse:
        upstream, violations = check_breaker_action(
            self.upstreams, request.upstream, request.action
        )
        await violations.abort_if_any(context)
        assert upstream is not None
        entry = apply_breaker_action(upstream, request.action)
        if entry is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, BREAKERS_OFF)
        await share_breaker_action(self.shared, upstream.name, request.action)
        return admin_pb2.TransitionBreakerResponse(breaker=entry)

    async def RecordEvaluation(
        self,
        request: admin_pb2.RecordEvaluationRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.RecordEvaluationResponse:
        """Exports `harag eval`'s result as gauges (the retrieval-quality alert reads them)."""
        violations = FieldViolations()
        violations.check(
            1 <= request.k <= MAX_EVAL_K, "k", f"is {request.k}; must be 1..{MAX_EVAL_K}"
        )
        violations.check(0.0 <= request.mrr <= 1.0, "mrr", f"is {request.mrr}; must be 0..1")
        violations.check(
            0.0 <= request.recall <= 1.0, "recall", f"is {request.recall}; must be 0..1"
        )
        violations.check(request.questions >= 1, "questions", "must be at least 1")
        name = request.question_set.strip()
        violations.check(
            0 < len(name) <= MAX_QUESTION_SET_CHARS,
            "question_set",
            f"must be 1..{MAX_QUESTION_SET_CHARS} characters",
        )
        await violations.abort_if_any(context)
        FEEDBACK_METRICS.evaluation(name, request.k, request.mrr, request.recall)
        log.info(
            "retrieval evaluation recorded",
            extra={
                "question_set": name,
                "k": request.k,
                "mrr": request.mrr,
                "recall": request.recall,
                "questions": request.questions,
            },
        )
        return admin_pb2.RecordEvaluationResponse()
