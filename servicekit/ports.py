"""The mesh's default ports, declared once.

Every process, the gateway's default chains, the local supervisor (`harag up`), the CLI and
the container health check read their defaults from here. A process's Prometheus port is
its gRPC port + `servicekit.metrics.PORT_OFFSET` unless configured.
"""

from __future__ import annotations

GATEWAY_PORT = 50051
"""The public RagGatewayService."""

GATEWAY_ADMIN_PORT = 50052
"""The gateway's operator listener (GatewayAdminService); by default the gRPC port + 1."""

COMPONENT_PORTS: dict[str, dict[str, int]] = {
    "embedder": {"primary": 50061, "fallback": 50062},
    "retriever": {"primary": 50071, "fallback": 50072},
    "generator": {"primary": 50081, "fallback": 50082},
}
"""Default gRPC port of each component implementation: component -> impl -> port."""

COMPONENT_NAMES: tuple[str, ...] = tuple(
    f"{component}-{impl}" for component, impls in COMPONENT_PORTS.items() for impl in impls
)
"""Process names of the six component processes (`embedder-primary`, ...)."""


def process_ports(offset: int = 0) -> dict[str, int]:
    """Every process of the mesh by name (`gateway`, `embedder-primary`, ...), shifted by offset."""
    ports = {"gateway": GATEWAY_PORT + offset}
    for component, by_impl in COMPONENT_PORTS.items():
        for impl, port in by_impl.items():
            ports[f"{component}-{impl}"] = port + offset
    return ports
