"""GatewayAdminService on a listener of its own, never on the public port.

Forcing breakers open is an operator's tool: it gets its own port (`admin_port`), which a
deployment keeps away from clients (k8s: a Service and NetworkPolicy of its own), and it
still needs a key with the `admin` scope when auth is on. The listener serves health and
reflection too, and is traced and measured like the public port.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.admin import GatewayAdmin
from harag.v1 import admin_pb2, admin_pb2_grpc
from servicekit.rpc_server_telemetry import RpcObserver, ServerTelemetryInterceptor

log = logging.getLogger("harag.gateway")

ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["GatewayAdminService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


async def start_admin_listener(
    admin: GatewayAdmin,
    host: str,
    port: int,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    observers: Sequence[RpcObserver] = (),
    reuse_port: bool = False,
) -> grpc.aio.Server | None:
    """Starts the admin listener on host:port; None (logged) when the port cannot be had."""
    server = grpc.aio.server(
        interceptors=[ServerTelemetryInterceptor(host, port, observers), *interceptors],
        # Workers share the admin port as they share the public one; each has its own breakers.
        options=[("grpc.so_reuseport", 1 if reuse_port else 0)],
    )
    admin_pb2_grpc.add_GatewayAdminServiceServicer_to_server(admin, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [ADMIN_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME], server
    )
    address = f"{host}:{port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        log.error("cannot listen (admin)", extra={"address": address, "error": str(exc)})
        return None
    await server.start()
    for name in ("", ADMIN_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving admin", extra={"address": address, "services": [ADMIN_SERVICE]})
    return server
