"""The gateway's settings: upstream chains, deadlines and limits (resilience knobs join later).

Every setting is documented with its default; env var `HARAG_<KEY>`, or a YAML file of
flat keys via `--config`/`HARAG_CONFIG` (the Kubernetes ConfigMap ships such a file).
"""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.config import Setting
from servicekit.ports import COMPONENT_PORTS, GATEWAY_PORT
from servicekit.server import COMMON_SETTINGS

PORT = GATEWAY_PORT
COMPONENTS = tuple(COMPONENT_PORTS)
DEFAULT_CHAINS = {
    component: ",".join(f"{component}-{impl}=127.0.0.1:{port}" for impl, port in by_impl.items())
    for component, by_impl in COMPONENT_PORTS.items()
}


@dataclass(frozen=True)
class UpstreamSpec:
    name: str
    address: str
    tier: int


def parse_chain(text: str) -> list[UpstreamSpec]:
    """Parses `name=host:port,name=host:port` (tier order) into specs; raises ValueError."""
    specs: list[UpstreamSpec] = []
    for tier, entry in enumerate(part.strip() for part in text.split(",") if part.strip()):
        name, sep, address = entry.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not name.strip() or not colon or not host or not port.isdigit():
            raise ValueError(f"entry {entry!r} is not name=host:port")
        specs.append(UpstreamSpec(name.strip(), address.strip(), tier))
    if not specs:
        raise ValueError("a chain needs at least one upstream")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("upstream names must be unique")
    return specs


def _chain_problem(text: str) -> str | None:
    try:
        parse_chain(text)
    except ValueError as exc:
        return str(exc)
    return None


SETTINGS: list[Setting] = [
    Setting("port", PORT, "gRPC port of the public API.", kind=int, minimum=1, maximum=65535),
    *COMMON_SETTINGS,
    *(
        Setting(
            f"{component}_chain",
            DEFAULT_CHAINS[component],
            f"The {component} fallback chain: comma-separated name=host:port, tier 0 first.",
            validate=_chain_problem,
        )
        for component in COMPONENTS
    ),
    Setting(
        "default_deadline_s",
        5.0,
        "Budget for a request whose caller sets no deadline.",
        kind=float,
        minimum=0.05,
        maximum=600,
    ),
    Setting(
        "reply_margin_s",
        0.02,
        "Time kept back from the caller's deadline to send the reply.",
        kind=float,
        minimum=0,
        maximum=5,
    ),
    Setting(
        "min_attempt_s",
        0.02,
        "No attempt starts with less time than this (outcome NO_TIME).",
        kind=float,
        minimum=0.001,
        maximum=10,
    ),
    Setting(
        "tier_reserve_s",
        0.08,
        "Time each attempt leaves for every later tier and later stage, so a hanging "
        "upstream cannot starve the fallbacks behind it.",
        kind=float,
        minimum=0,
        maximum=10,
    ),
    Setting("embed_timeout_s", 1.0, "Per-attempt timeout cap for Embed.", kind=float, minimum=0.01),
    Setting(
        "retrieve_timeout_s", 1.0, "Per-attempt timeout cap for Search.", kind=float, minimum=0.01
    ),
    Setting(
        "generate_timeout_s", 3.0, "Per-attempt timeout cap for Generate.", kind=float, minimum=0.01
    ),
    Setting(
        "default_top_k",
        4,
        "top_k when the request leaves it unset.",
        kind=int,
        minimum=1,
        maximum=50,
    ),
    Setting(
        "max_query_chars", 2000, "Longest accepted query.", kind=int, minimum=1, maximum=100000
    ),
    Setting(
        "retry_after_s",
        5.0,
        "retry_after advertised with the static 'temporarily unavailable' answer.",
        kind=float,
        minimum=0,
        maximum=3600,
    ),
    Setting(
        "max_ingest_documents",
        512,
        "Most documents per Ingest call.",
        kind=int,
        minimum=1,
        maximum=100000,
    ),
    Setting(
        "max_document_chars",
        8192,
        "Longest accepted document text (the embedders' limit).",
        kind=int,
        minimum=1,
    ),
    Setting(
        "ingest_batch_size",
        64,
        "Documents per Embed/Upsert call during ingest.",
        kind=int,
        minimum=1,
    ),
    Setting(
        "ingest_timeout_s",
        30.0,
        "Per-call timeout for Embed/Upsert during ingest.",
        kind=float,
        minimum=0.1,
    ),
    # -- circuit breaker, one per upstream (Resilience4j semantics) --
    Setting("breaker_enabled", True, "Use a circuit breaker per upstream.", kind=bool),
    Setting(
        "breaker_window_type",
        "count",
        "Sliding window kind.",
        choices=("count", "time"),
    ),
    Setting(
        "breaker_window_size",
        20,
        "Window size: calls (count) or seconds (time).",
        kind=int,
        minimum=1,
        maximum=10000,
    ),
    Setting(
        "breaker_minimum_calls",
        10,
        "Calls recorded before the failure rate can open it.",
        kind=int,
        minimum=1,
        maximum=10000,
    ),
    Setting(
        "breaker_failure_rate_threshold",
        50.0,
        "Failure rate (%) that opens the breaker.",
        kind=float,
        minimum=0.1,
        maximum=100,
    ),
    Setting(
        "breaker_slow_call_rate_threshold",
        100.0,
        "Slow-call rate (%) that opens the breaker.",
        kind=float,
        minimum=0.1,
        maximum=100,
    ),
    Setting(
        "breaker_slow_call_duration_s",
        2.0,
        "A call slower than this is slow.",
        kind=float,
        minimum=0.001,
    ),
    Setting(
        "breaker_wait_in_open_s",
        5.0,
        "Open wait after the first trip.",
        kind=float,
        minimum=0.001,
    ),
    Setting(
        "breaker_wait_multiplier",
        2.0,
        "Open wait growth per consecutive trip.",
        kind=float,
        minimum=1,
    ),
    Setting(
        "breaker_max_wait_in_open_s",
        60.0,
        "Cap of the open wait (before jitter).",
        kind=float,
        minimum=0.001,
    ),
    Setting(
        "breaker_wait_jitter",
        0.2,
        "Open wait jitter, as a fraction (0.2 = +-20%).",
        kind=float,
        minimum=0,
        maximum=1,
    ),
    Setting(
        "breaker_permitted_calls_in_half_open",
        3,
        "Concurrent probe calls in HALF_OPEN.",
        kind=int,
        minimum=1,
        maximum=1000,
    ),
    Setting(
        "breaker_max_half_open_s",
        10.0,
        "HALF_OPEN undecided this long goes back to OPEN.",
        kind=float,
        minimum=0.001,
    ),
    Setting(
        "breaker_probe_interval_s",
        0.5,
        "How often an open breaker with no traffic gets a probe call (the upstream's most "
        "recent request, replayed); 0 = probe only with live traffic.",
        kind=float,
        minimum=0,
        maximum=600,
    ),
    # -- retries and hedging --
    Setting(
        "retry_max_attempts",
        3,
        "Attempts per logical call, first included (1 = no retries).",
        kind=int,
        minimum=1,
        maximum=10,
    ),
    Setting(
        "retry_initial_backoff_s",
        0.025,
        "First retry backoff cap (full jitter).",
        kind=float,
        minimum=0,
    ),
    Setting("retry_max_backoff_s", 0.5, "Largest retry backoff.", kind=float, minimum=0),
    Setting(
        "retry_budget_ratio",
        0.2,
        "Retries+hedges allowed per request (Envoy retry budget).",
        kind=float,
        minimum=0,
        maximum=10,
    ),
    Setting(
        "retry_budget_min_per_s",
        3.0,
        "Retries+hedges always allowed per second (the floor).",
        kind=float,
        minimum=0,
    ),
    Setting(
        "retry_budget_window_s",
        10,
        "Window (s) over which the retry budget is counted.",
        kind=int,
        minimum=1,
        maximum=3600,
    ),
    Setting("hedge_enabled", True, "Hedge idempotent calls (Embed, Search).", kind=bool),
    Setting(
        "hedge_delay_s",
        0.0,
        "Delay before the hedge; 0 = the slow upstream's observed p95 (no hedge until known).",
        kind=float,
        minimum=0,
    ),
    Setting("hedge_min_delay_s", 0.005, "Smallest hedge delay.", kind=float, minimum=0),
    # -- bulkheads and load shedding --
    Setting(
        "bulkhead_max_concurrent",
        64,
        "In-flight calls per upstream; more go to the next tier.",
        kind=int,
        minimum=1,
        maximum=100000,
    ),
    Setting(
        "max_inflight_requests",
        256,
        "In-flight public requests; more are shed with RESOURCE_EXHAUSTED + RetryInfo.",
        kind=int,
        minimum=1,
        maximum=100000,
    ),
    Setting(
        "admission_queue_target_s",
        0.1,
        "Shed new queries while calls wait longer than this inside the gateway before it "
        "starts on them (measured by self-probes); 0 disables.",
        kind=float,
        minimum=0,
    ),
    Setting(
        "admission_probe_interval_s",
        0.02,
        "Pause between the gateway's self-probes while it is taking queries.",
        kind=float,
        minimum=0.001,
    ),
    Setting(
        "shed_retry_after_s",
        0.5,
        "RetryInfo delay sent with shed requests.",
        kind=float,
        minimum=0,
    ),
    # -- coalescing and cache --
    Setting("coalesce_enabled", True, "Identical concurrent queries share one run.", kind=bool),
    Setting(
        "cache_ttl_s",
        60.0,
        "How long a fresh answer is served from cache; 0 disables.",
        kind=float,
        minimum=0,
    ),
    Setting("cache_max_entries", 10000, "Answers kept fresh in cache.", kind=int, minimum=1),
    Setting(
        "stale_ttl_s",
        3600.0,
        "How long the last good answer may be served stale when every generator fails; 0 off.",
        kind=float,
        minimum=0,
    ),
    Setting(
        "bare",
        False,
        "Benchmark baseline: same upstream calls, no breakers, retries, hedging, bulkheads, "
        "coalescing or cache.",
        kind=bool,
    ),
    Setting(
        "skip_not_serving",
        True,
        "Skip an upstream whose grpc.health.v1 Watch reports NOT_SERVING (outcome NOT_SERVING).",
        kind=bool,
    ),
]
