"""A stand-in OTLP/gRPC trace collector that accepts and discards spans, counting them.

It runs as its own process, like a real collector, so exporting spans costs the traced
processes what it would in production (serialising and sending), while the benchmark does
not also measure Jaeger's storage. It prints a running total after each export.

    python -m bench.otlp_sink --port 4317
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from harag_cli.supervisor import ProcessSpec, Supervisor

TOTAL_PREFIX = "spans="


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans = 0

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.spans += sum(
            len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
        )
        print(f"{TOTAL_PREFIX}{self.spans}", flush=True)
        return trace_service_pb2.ExportTraceServiceResponse()


async def serve(port: int) -> None:
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Collector(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


class OtlpSink:
    """`async with OtlpSink(port) as sink:` runs the collector process; `sink.endpoint`."""

    def __init__(self, port: int) -> None:
        self.endpoint = f"http://127.0.0.1:{port}"
        self._lines: list[str] = []
        spec = ProcessSpec(
            "otlp-sink", [sys.executable, "-m", "bench.otlp_sink", "--port", str(port)], port
        )
        self._supervisor = Supervisor([spec], sink=lambda _, line: self._lines.append(line))

    async def __aenter__(self) -> OtlpSink:
        await self._supervisor.start()
        await self._supervisor.wait_serving(timeout_s=30)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._supervisor.stop()

    @property
    def pid(self) -> int:
        return self._supervisor.procs["otlp-sink"].pid

    async def spans(self, settle_s: float = 1.5) -> int:
        """Spans received so far, after waiting for the exporters' next batch."""
        await asyncio.sleep(settle_s)
        totals = [line for line in self._lines if line.startswith(TOTAL_PREFIX)]
        return int(totals[-1].removeprefix(TOTAL_PREFIX)) if totals else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink", description=__doc__)
    parser.add_argument("--port", type=int, default=4317)
    asyncio.run(serve(parser.parse_args(argv).port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
