"""GatewayAdminService: list breakers and transition them by hand (operators only)."""

from __future__ import annotations

from typing import Any

import grpc

from gateway.health import breaker_status
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import admin_pb2, admin_pb2_grpc
from servicekit.errors import FieldViolations

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


class GatewayAdmin(admin_pb2_grpc.GatewayAdminServiceServicer):
    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams

    async def ListBreakers(
        self, request: admin_pb2.ListBreakersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ListBreakersResponse:
        return admin_pb2.ListBreakersResponse(breakers=[_entry(u) for u in self.upstreams.all()])

    async def TransitionBreaker(
        self,
        request: admin_pb2.TransitionBreakerRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.TransitionBreakerResponse:
        upstream = self.upstreams.by_name(request.upstream)
        violations = FieldViolations()
        names = ", ".join(u.name for u in self.upstreams.all())
        violations.check(upstream is not None, "upstream", f"unknown upstream; one of {names}")
        violations.check(
            request.action in ACTIONS,
            "action",
            f"is {request.action}; must be one of "
            + ", ".join(admin_pb2.BreakerAction.Name(a) for a in sorted(ACTIONS)),
        )
        await violations.abort_if_any(context)
        assert upstream is not None
        breaker = upstream.guard.breaker
        if breaker is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "breakers are off on this gateway"
            )
        assert breaker is not None
        if request.action == admin_pb2.BREAKER_ACTION_FORCE_OPEN:
            breaker.force_open()
        elif request.action == admin_pb2.BREAKER_ACTION_DISABLE:
            breaker.disable()
        elif request.action == admin_pb2.BREAKER_ACTION_RESET:
            # A fresh start: the status forgets the recent calls too.
            breaker.reset()
            if upstream.guard.recent is not None:
                upstream.guard.recent.reset()
        return admin_pb2.TransitionBreakerResponse(breaker=_entry(upstream))
