"""Settings of the per-client rate limits (`rate_limit_*`): the defaults a caller's key can
override (gateway/security/identity.py `RateLimits`), and the replica count the local
fallback divides them by."""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.settings import check_fields, setting


@dataclass(frozen=True)
class RateLimitConfig:
    """Per-client limits, shared by every replica through Redis (redis_url), else per
    process. A key's own limits (from the key or its tier) replace these defaults."""

    queries_per_s: float = setting(
        0.0,
        "rate_limit_queries_per_s",
        "Default sustained Query/StreamQuery rate per client; 0 = no limit unless the "
        "client's key sets one.",
        unit="queries/s",
        minimum=0,
        maximum=1_000_000,
    )
    query_burst: int = setting(
        20,
        "rate_limit_query_burst",
        "Default number of queries a client may send at once, above which it is held to "
        "rate_limit_queries_per_s.",
        unit="queries",
        minimum=1,
        maximum=1_000_000,
    )
    documents_per_minute: float = setting(
        0.0,
        "rate_limit_documents_per_minute",
        "Default documents per client and minute, counted over Ingest (documents) and "
        "DeleteDocuments (ids); a minute's worth may come at once. 0 = no limit unless the "
        "client's key sets one.",
        unit="documents/min",
        minimum=0,
        maximum=100_000_000,
    )
    replicas: int = setting(
        1,
        "rate_limit_replicas",
        "Gateway replicas expected to share the limits. While Redis is configured but "
        "unavailable, each replica enforces its share alone: rate and burst divided by this "
        "(without redis_url every process enforces the whole limit).",
        unit="replicas",
        minimum=1,
        maximum=10000,
    )

    def __post_init__(self) -> None:
        check_fields(self)
