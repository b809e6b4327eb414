"""Settings of what gateway replicas share through Redis (`shared_*`, `cache_l2_*`,
`cache_lease_*`): the answer cache's Redis layer, the lease that runs identical queries once
across replicas, and breaker decisions. All of it is off without `redis_url`."""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.settings import check_fields, setting


@dataclass(frozen=True)
class SharedStateConfig:
    """What replicas share on Redis; each feature falls back to this process alone when
    Redis is not configured or does not answer within its timeout."""

    cache_l2_enabled: bool = setting(
        True,
        "cache_l2_enabled",
        "Answers are shared through Redis (L2 behind each replica's own cache): an answer "
        "one replica computed is served by the others. Needs redis_url.",
    )
    cache_l2_max_value_bytes: int = setting(
        262144,
        "cache_l2_max_value_bytes",
        "Largest answer (serialized, with its sources) written to Redis; larger ones stay "
        "in the replica's own cache only.",
        unit="bytes",
        minimum=1024,
        maximum=16 * 1024 * 1024,
    )
    cache_lease_ms: float = setting(
        2000.0,
        "cache_lease_ms",
        "How long a replica holds the lease on a query it is answering, so identical "
        "queries at other replicas wait for its answer instead of running the pipeline; "
        "expires by itself if that replica dies. 0 = no lease.",
        unit="ms",
        minimum=0,
        maximum=60000,
    )
    cache_lease_wait_fraction: float = setting(
        0.5,
        "cache_lease_wait_fraction",
        "Share of its remaining deadline a query waits for another replica's answer to the "
        "same query before computing it itself.",
        minimum=0,
        maximum=0.9,
    )
    cache_lease_poll_ms: float = setting(
        25.0,
        "cache_lease_poll_ms",
        "How often a query waiting on another replica's lease looks for the answer.",
        unit="ms",
        minimum=1,
        maximum=1000,
    )
    shared_breakers_enabled: bool = setting(
        True,
        "shared_breakers_enabled",
        "A breaker that opens on one replica opens the same upstream's breaker on every "
        "replica for the rest of its open wait; admin force-open/disable/reset apply to "
        "every replica. Needs redis_url.",
    )
    shared_poll_interval_s: float = setting(
        0.25,
        "shared_poll_interval_s",
        "How often each replica reads the shared breaker decisions and cache evictions from "
        "Redis: the backstop when a pub/sub message was missed (its connection dropped).",
        unit="s",
        minimum=0.01,
        maximum=60,
    )

    def __post_init__(self) -> None:
        check_fields(self)
