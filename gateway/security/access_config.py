"""Who may call the gateway and where: API-key authentication and the admin listener.

Auth is off in a bare `python -m gateway` (so existing scripts and tests that start a
gateway directly keep working), and on wherever the project ships a deployment: `harag up` /
`make run`, deploy/compose.yaml and deploy/k8s all set `auth_enabled`.
"""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.ports import GATEWAY_ADMIN_PORT, GATEWAY_PORT
from servicekit.settings import RuleViolation, check_fields, setting

ADMIN_PORT_OFFSET = GATEWAY_ADMIN_PORT - GATEWAY_PORT


def resolve_admin_port(admin_port: int, grpc_port: int) -> int:
    """The admin listener's port for an `admin_port` setting: 0 = none, -1 = gRPC port + 1."""
    return grpc_port + ADMIN_PORT_OFFSET if admin_port == -1 else admin_port


@dataclass(frozen=True)
class AccessConfig:
    """API keys with scopes, and the operator listener GatewayAdminService is served on."""

    auth_enabled: bool = setting(
        False,
        "auth_enabled",
        "Require an API key (`authorization: Bearer <key>` or `x-api-key`) on every call but "
        "health checks. Off only for a bare `python -m gateway`: `harag up`, compose and k8s "
        "turn it on.",
    )
    auth_key_file: str = setting(
        "",
        "auth_key_file",
        "The JSON key file (hashed keys, scopes, tiers; see the README's Security section); "
        "re-read when it changes. Required when auth_enabled.",
        unit="path",
    )
    auth_key_reload_s: float = setting(
        0.5,
        "auth_key_reload_s",
        "How often the key file is checked for a change (inode, size, mtime: Kubernetes "
        "swaps a Secret volume's files by symlink, which this sees).",
        unit="s",
        above_minimum=True,
        minimum=0,
        maximum=60,
    )
    auth_open_reflection: bool = setting(
        True,
        "auth_open_reflection",
        "Server reflection answers without a key (grpcurl can list services); false: "
        "reflection needs a key of any scope.",
    )
    admin_port: int = setting(
        -1,
        "admin_port",
        "gRPC port of GatewayAdminService (operators only; never on the public port); "
        f"-1 = the gRPC port + {ADMIN_PORT_OFFSET} ({GATEWAY_ADMIN_PORT} by default), "
        "0 = no admin listener.",
        unit="port",
        minimum=-1,
        maximum=65535,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.auth_enabled and not self.auth_key_file.strip():
            raise RuleViolation("{auth_enabled} needs {auth_key_file}")
