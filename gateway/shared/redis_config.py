"""Settings of the gateway's link to Redis (`redis_*`): apart from the link itself so that
loading the configuration does not import the Redis client."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from servicekit.settings import RuleViolation, check_fields, setting

REDIS_SCHEMES = ("redis", "rediss", "unix")


def _url_problem(url: str) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        return f"scheme must be one of {', '.join(REDIS_SCHEMES)}"
    if parts.scheme != "unix" and not parts.hostname:
        return "a host is needed"
    try:
        parts.port  # noqa: B018 - raises ValueError on a port outside 0..65535
    except ValueError:
        return "the port is not a number in 0..65535"
    return None


@dataclass(frozen=True)
class RedisConfig:
    """The one connection pool every gateway feature that shares state uses (rate limits;
    the answer cache and breaker decisions later), with a breaker around Redis itself."""

    url: str = setting(
        "",
        "redis_url",
        "Redis shared by every gateway replica, e.g. redis://redis:6379/0 (rediss:// for "
        "TLS, unix:///path.sock); empty = no Redis: every feature works per process.",
        validate=_url_problem,
        form="empty, or a redis://, rediss:// or unix:// URL",
    )
    key_prefix: str = setting(
        "harag:",
        "redis_key_prefix",
        "Prefix of every key the gateway writes, so several deployments can share a Redis.",
    )
    connect_timeout_ms: float = setting(
        100.0,
        "redis_connect_timeout_ms",
        "Longest wait for a new connection to Redis.",
        unit="ms",
        minimum=1,
        maximum=10000,
    )
    socket_timeout_ms: float = setting(
        50.0,
        "redis_socket_timeout_ms",
        "Longest wait for Redis's reply to one call; a call never takes longer than this "
        "plus redis_connect_timeout_ms, whatever Redis does.",
        unit="ms",
        minimum=1,
        maximum=10000,
    )
    max_connections: int = setting(
        32,
        "redis_max_connections",
        "Connections to Redis per gateway process; a call that finds them all busy waits "
        "at most redis_connect_timeout_ms for one.",
        unit="connections",
        minimum=1,
        maximum=10000,
    )
    breaker_minimum_calls: int = setting(
        5,
        "redis_breaker_minimum_calls",
        "Calls of the last 20 (at least this many) of which half failing or timing out open "
        "the breaker around Redis; while it is open, callers fall back to local behaviour "
        "at once instead of waiting for Redis.",
        unit="calls",
        minimum=1,
        maximum=20,
    )
    breaker_open_s: float = setting(
        1.0,
        "redis_breaker_open_s",
        "How long the breaker around Redis stays open before one call probes Redis again "
        "(doubling on repeated trips up to 30 s).",
        unit="s",
        minimum=0.01,
        maximum=30,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.key_prefix != self.key_prefix.strip():
            raise RuleViolation("{key_prefix} must not start or end with white space")

    @property
    def call_timeout_s(self) -> float:
        """The most one call may take: a new connection plus the reply."""
        return (self.connect_timeout_ms + self.socket_timeout_ms) / 1000
