"""The gateway's HTTP port: /metrics and the live status page, in the gateway's event loop.

Why one aiohttp server in the event loop instead of servicekit's threaded /metrics server
(which the components keep): the page reads breakers, guards and recent answers, which
belong to the event loop and are not thread-safe (gateway.resilience.breaker); read from the
loop, every snapshot is consistent without locks, breaker actions run exactly where gRPC's
admin calls run, and a breaker transition can wake the page's event streams at once. The
Prometheus scrape runs in the loop too, for the same reason (its callbacks read the guards);
a scrape costs about a millisecond of loop time.

Routes:
    GET  /metrics                    Prometheus exposition (text or OpenMetrics)
    GET  /status                     the page (HTML, CSS and JS shipped in the package)
    GET  /status/static/<file>       its CSS and JS
    GET  /status.json                one snapshot                          (admin scope)
    GET  /status/events              server-sent events: a snapshot per push interval and
                                     on every breaker transition           (admin scope)
    POST /status/breakers/<upstream> {"action": "force_open"|"disable"|"reset"} (admin scope)

The page itself holds no data, so it is served to anyone who reaches the port; its data and
actions need the `admin` scope when API keys are on (gateway.status.auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from gateway.admin import (
    BREAKERS_OFF,
    apply_breaker_action,
    check_breaker_action,
    share_breaker_action,
)
from gateway.shared.breaker_sync import SharedBreakers
from gateway.status.activity import Activity
from gateway.status.auth import Denied, TokenValidator, authorize
from gateway.status.config import StatusPageConfig
from gateway.status.snapshot import snapshot
from gateway.status.transitions import TransitionLog
from gateway.upstreams import Upstreams
from harag.v1 import admin_pb2

log = logging.getLogger("harag.status")

STATIC_FILES = {
    "status.css": "text/css",
    "status.js": "text/javascript",
}
ACTIONS = {
    "force_open": admin_pb2.BREAKER_ACTION_FORCE_OPEN,
    "disable": admin_pb2.BREAKER_ACTION_DISABLE,
    "reset": admin_pb2.BREAKER_ACTION_RESET,
}
JSON = "application/json"


def _static(name: str) -> bytes:
    return (resources.files("gateway.status") / "static" / name).read_bytes()


def _scrape(accept: str | None) -> tuple[bytes, str]:
    from prometheus_client import REGISTRY
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type


@dataclass
class StatusSources:
    """What the page reads: the gateway's upstreams and what it recorded of its answers."""

    upstreams: Upstreams
    activity: Activity
    transitions: TransitionLog
    cfg: StatusPageConfig
    started_at: float = field(default_factory=time.monotonic)
    validator: TokenValidator | None = None
    # Operators' actions reach every replica through it (None: no Redis, this replica only).
    shared_breakers: SharedBreakers | None = None

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.upstreams, self.activity, self.transitions, self.cfg, self.started_at)


def _denied(denied: Denied) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="harag"'} if denied.status == 401 else None
    return web.json_response(
        {"error": denied.reason, "message": denied.message}, status=denied.status, headers=headers
    )


class StatusApp:
    def __init__(self, sources: StatusSources | None) -> None:
        self.sources = sources
        self.closing = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/metrics", self.metrics)
        if sources is not None:
            self.page = _static("index.html")
            self.files = {name: _static(name) for name in STATIC_FILES}
            self.app.router.add_get("/status", self.index)
            self.app.router.add_get("/status/static/{name}", self.static)
            self.app.router.add_get("/status.json", self.status_json)
            self.app.router.add_get("/status/events", self.events)
            self.app.router.add_post("/status/breakers/{upstream}", self.breaker_action)

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = _scrape(request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page, content_type="text/html", charset="utf-8")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[name], content_type=STATIC_FILES[name])

    def _sources(self, request: web.Request) -> StatusSources | web.Response:
        assert self.sources is not None
        identity = authorize(request.headers.get("Authorization"), self.sources.validator)
        if isinstance(identity, Denied):
            return _denied(identity)
        return self.sources

    async def status_json(self, request: web.Request) -> web.StreamResponse:
        sources = self._sources(request)
        if isinstance(sources, web.Response):
            return sources
        return web.json_response(sources.snapshot(), headers={"Cache-Control": "no-store"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        sources = self._sources(request)
        if isinstance(sources, web.Response):
            return sources
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # proxies: pass each event on at once
            }
        )
        await response.prepare(request)
        changed = sources.transitions.subscribe()
        try:
            while not self.closing.is_set():
                data = json.dumps(sources.snapshot(), separators=(",", ":"))
                await response.write(f"event: status\ndata: {data}\n\n".encode())
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sources.cfg.push_interval_s):
                        await changed.wait()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away or the gateway is stopping
        finally:
            sources.transitions.unsubscribe(changed)
        return response

    async def breaker_action(self, request: web.Request) -> web.Response:
        sources = self._sources(request)
        if isinstance(sources, web.Response):
            return sources
        # A JSON body makes a cross-site POST need a CORS preflight, which is never granted:
        # another site open in the operator's browser cannot act on breakers.
        if request.content_type != JSON:
            return web.json_response(
                {"error": "UNSUPPORTED_MEDIA_TYPE", "message": f"send {JSON}"}, status=415
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        text = body.get("action") if isinstance(body, dict) else None
        action = ACTIONS.get(text) if isinstance(text, str) else None
        upstream, violations = check_breaker_action(
            sources.upstreams,
            request.match_info["upstream"],
            admin_pb2.BREAKER_ACTION_UNSPECIFIED if action is None else action,
        )
        choices = f"must be one of {', '.join(ACTIONS)}"
        problems = [(f, choices if f == "action" else d) for f, d in violations.violations]
        if problems:
            return web.json_response(
                {
                    "error": "INVALID_ARGUMENT",
                    "field_violations": [{"field": f, "description": d} for f, d in problems],
                },
                status=400,
            )
        assert upstream is not None and action is not None
        entry = apply_breaker_action(upstream, action)
        if entry is None:
            return web.json_response(
                {"error": "FAILED_PRECONDITION", "message": BREAKERS_OFF}, status=409
            )
        await share_breaker_action(sources.shared_breakers, upstream.name, action)
        log.warning(
            "breaker action from the status page",
            extra={
                "upstream": upstream.name,
                "action": text,
                "to_state": upstream.guard.breaker_state,
            },
        )
        return web.json_response({"upstream": upstream.name, "state": upstream.guard.breaker_state})


StopEndpoint = Callable[[], Awaitable[None]]


def http_endpoint(
    sources: StatusSources | None,
) -> Callable[[str, int], Awaitable[StopEndpoint | None]]:
    """servicekit's `http_endpoint` hook: serves /metrics (and the page when `sources`)."""

    async def start(host: str, port: int) -> StopEndpoint | None:
        status = StatusApp(sources)
        runner = web.AppRunner(
            status.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            log.warning("metrics endpoint not started", extra={"port": port, "error": str(exc)})
            return None
        base = f"http://{host}:{port}"
        log.info(
            "metrics endpoint",
            extra={
                "metrics_address": f"{base}/metrics",
                **({"status_page": f"{base}/status"} if sources is not None else {}),
            },
        )

        async def stop() -> None:
            status.closing.set()
            if sources is not None:
                sources.transitions.wake_all()  # event streams end now, not at their next push
            await runner.cleanup()

        return stop

    return start


@contextlib.asynccontextmanager
async def serving(
    sources: StatusSources | None, host: str, port: int
) -> AsyncIterator[StopEndpoint | None]:
    """For tests: the endpoint for the duration of a block."""
    stop = await http_endpoint(sources)(host, port)
    try:
        yield stop
    finally:
        if stop is not None:
            await stop()
