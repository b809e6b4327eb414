"""GatewayAdminService: list breakers and transition them by hand (operators only)."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from gateway.health import breaker_status
from gateway.shared.breaker_sync import DISABLE, FORCE_OPEN, RESET, SharedBreakers
from gateway.shared.redis_link import RedisUnavailable
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import admin_pb2, admin_pb2_grpc
from servicekit.errors import FieldViolations

log = logging.getLogger("harag.gateway")


def _entry(upstream: Upstream) -> admin_pb2.UpstreamBreaker:
    return admin_pb2.UpstreamBreaker(upstream=upstream.name, breaker=breaker_status(upstream))


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
        upstream = self.upstreams.by_name(request.upstream)
        violations = FieldViolations()
        names = ", ".join(u.name for u in self.upstreams.all())
        violations.check(upstream is not None, "upstream", f"unknown upstream; one of {names}")
        violations.check(
            request.action != admin_pb2.BREAKER_ACTION_UNSPECIFIED, "action", "must be set"
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
            action = FORCE_OPEN
        elif request.action == admin_pb2.BREAKER_ACTION_DISABLE:
            breaker.disable()
            action = DISABLE
        else:
            # A fresh start: the status forgets the recent calls too.
            breaker.reset()
            if upstream.guard.recent is not None:
                upstream.guard.recent.reset()
            action = RESET
        if self.shared is not None and self.shared.link.configured:
            try:
                await self.shared.publish_admin(upstream.name, action)
            except RedisUnavailable as exc:
                # Applied here; the other replicas keep their own until Redis is back.
                log.warning(
                    "breaker action not shared: redis unavailable",
                    extra={"upstream": upstream.name, "action": action, "reason": exc.reason},
                )
        return admin_pb2.TransitionBreakerResponse(breaker=_entry(upstream))
