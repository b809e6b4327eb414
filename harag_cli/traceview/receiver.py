"""The trace viewer's servers: an OTLP/gRPC receiver and a small JSON query API over HTTP.

The receiver implements the OpenTelemetry collector's `TraceService` (opentelemetry-proto),
so any OTLP exporter can send to it: our services, the tests, or anything else. It also
accepts OTLP metrics and logs and drops them, so an exporter pointed at it by
`OTEL_EXPORTER_OTLP_ENDPOINT` never logs UNIMPLEMENTED errors.

Query API (read-only, JSON):
    GET /api/traces?limit=N     recent trace summaries, newest first
    GET /api/traces/<id>        every span of a trace (`<id>` may be a unique prefix)
    GET /traces/<id>            the trace as a text waterfall, for a browser (the status
                                page's trace links)
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from harag_cli.traceview.store import AmbiguousTraceId, TraceStore, spans_of
from harag_cli.traceview.waterfall import render_trace

log = logging.getLogger("harag_cli.traceview")

OTLP_PORT = 4319  # not 4317, so a local Jaeger or Collector can keep the standard port
API_PORT = 4320
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: TraceStore) -> None:
        self.store = store

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.store.add(spans_of(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    async def Export(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsSink(logs_service_pb2_grpc.LogsServiceServicer):
    async def Export(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        return logs_service_pb2.ExportLogsServiceResponse()


def _api_handler(store: TraceStore) -> type[BaseHTTPRequestHandler]:
    class QueryApi(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            if parts == ["api", "traces"]:
                limit = parse_qs(url.query).get("limit", ["20"])[0]
                count = int(limit) if limit.isdigit() else 20
                self._send(HTTPStatus.OK, {"traces": store.recent(count)})
            elif len(parts) == 3 and parts[:2] == ["api", "traces"]:
                try:
                    spans = store.get(parts[2])
                except AmbiguousTraceId as exc:
                    self._send(HTTPStatus.CONFLICT, {"error": str(exc)})
                    return
                if spans is None:
                    self._send(HTTPStatus.NOT_FOUND, {"error": f"no trace {parts[2]}"})
                else:
                    body = {"trace_id": spans[0].trace_id, "spans": [s.to_json() for s in spans]}
                    self._send(HTTPStatus.OK, body)
            elif len(parts) == 2 and parts[0] == "traces":
                self._waterfall(parts[1])
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": "try /api/traces"})

        def _waterfall(self, trace_id: str) -> None:
            try:
                spans = store.get(trace_id)
            except AmbiguousTraceId as exc:
                spans, text = None, str(exc)
            else:
                text = render_trace(spans) if spans else f"no trace {trace_id} (yet)"
            data = text.encode()
            self.send_response(HTTPStatus.OK if spans else HTTPStatus.NOT_FOUND)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send(self, status: HTTPStatus, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the mesh's logs

    return QueryApi


class TraceViewer:
    """Runs the OTLP receiver (grpc.aio, this event loop) and the query API (a thread)."""

    def __init__(
        self,
        store: TraceStore | None = None,
        host: str = "127.0.0.1",
        otlp_port: int = OTLP_PORT,
        api_port: int = API_PORT,
    ) -> None:
        self.store = store or TraceStore()
        self.host = host
        self.otlp_port = otlp_port
        self.api_port = api_port
        self._grpc: grpc.aio.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    @property
    def otlp_endpoint(self) -> str:
        """What to put in OTEL_EXPORTER_OTLP_ENDPOINT (scheme http = plaintext gRPC)."""
        return f"http://{self.host}:{self.otlp_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    async def start(self) -> None:
        """Binds both ports (0 = any free port); raises OSError when one is taken."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ]
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceReceiver(self.store), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsSink(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsSink(), server)
        try:
            self.otlp_port = server.add_insecure_port(f"{self.host}:{self.otlp_port}")
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.otlp_port}: {exc}") from None
        self._http = ThreadingHTTPServer((self.host, self.api_port), _api_handler(self.store))
        self._http.daemon_threads = True
        self.api_port = self._http.server_address[1]
        await server.start()
        self._grpc = server
        threading.Thread(target=self._http.serve_forever, name="traceview-api", daemon=True).start()

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(1.0)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
