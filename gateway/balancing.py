"""How the gateway dials an upstream: one process, or every pod of a component.

An upstream's address in a chain setting is one of
  host:port                   one process (as before: grpc's default pick_first)
  dns:///name:port            every address the name resolves to, re-resolved when a
                              connection drops: a Kubernetes headless Service, whose A
                              records are the ready pods
  ip:port|ip:port|...         a fixed list of IPv4 addresses (grpc's `ipv4:` target): the
                              local stand-in for a headless Service's A records
The last two are balanced: grpc's `round_robin` spreads calls over every address, and its
client-side health checking (`healthCheckConfig`, the grpc.health.v1 service every
component serves) takes a pod that is NOT_SERVING or unreachable out of the rotation until
it is back, so a pod that goes away is dropped, not called. A call in flight on a pod that
dies fails with UNAVAILABLE, which the resilience layer retries on another pod.

One breaker per upstream, not per pod: the breaker measures the upstream as the gateway
sees it through the balancer, and since every replica balances over the same pods, a remote
OPEN means the same at every replica (gateway/shared/breaker_sync.py). Per-pod trouble
(one bad pod) is the balancer's job: health checking ejects a pod that says it is not
serving or cannot be reached; a pod that is up but wrong (slow or failing while SERVING)
lowers the upstream's success rate until the breaker decides for all of them.
"""

from __future__ import annotations

import ipaddress
import json

DNS_PREFIX = "dns:///"
LIST_SEPARATOR = "|"

BALANCED_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        # "" = the server's overall health, as every component reports it.
        "healthCheckConfig": {"serviceName": ""},
    }
)
BALANCED_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.service_config", BALANCED_SERVICE_CONFIG),
    # Re-resolve soon after a pod goes away (grpc's default waits 30 s between lookups).
    ("grpc.dns_min_time_between_resolutions_ms", 1000),
]


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} has port {port}, outside 1..65535")
    return host, int(port)


def check_address(address: str) -> None:
    """Raises ValueError naming what is wrong with an upstream address."""
    if address.startswith(DNS_PREFIX):
        _host_port(address.removeprefix(DNS_PREFIX))
        return
    parts = address.split(LIST_SEPARATOR)
    for part in parts:
        host, _ = _host_port(part)
        if len(parts) > 1:
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(
                    f"{part!r}: a list of addresses takes IPv4 addresses (use dns:///name:port "
                    "for a name with several addresses)"
                ) from None


def is_balanced(address: str) -> bool:
    return address.startswith(DNS_PREFIX) or LIST_SEPARATOR in address


def channel_target(address: str) -> str:
    """The grpc target for an (already checked) upstream address."""
    if LIST_SEPARATOR in address:
        return "ipv4:" + ",".join(address.split(LIST_SEPARATOR))
    return address


def channel_options(address: str) -> list[tuple[str, str | int]]:
    """Channel options beyond the common ones: balancing for a balanced address."""
    return list(BALANCED_OPTIONS) if is_balanced(address) else []
