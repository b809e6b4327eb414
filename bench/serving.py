"""Serve benchmark-only gRPC servicers (the stub upstreams, the minimal relay) until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


async def serve_until_signalled(register: Callable[[grpc.aio.Server], None], address: str) -> int:
    """Serves what `register` adds, plus grpc.health.v1 (SERVING), until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(address)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(1.0)
    return 0
