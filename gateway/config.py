"""The gateway's configuration: one typed tree, each setting declared once on its field.

`GatewayConfig` holds typed sections; the resilience ones are the resilience layer's own
dataclasses (`BreakerConfig`, `RetryPolicy`, `RetryBudgetConfig`), whose fields carry the
`breaker_*` / `retry_*` settings. Every setting is an env var `HARAG_<KEY>` or a key of the
flat YAML file given by `--config`/`HARAG_CONFIG` (the Kubernetes ConfigMap ships such a
file); see servicekit.config for layering and validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.balancing import check_address
from gateway.feedback.config import FeedbackConfig
from gateway.input_limits import InputLimits
from gateway.outbox.config import OutboxConfig
from gateway.resilience.breaker_types import BreakerConfig
from gateway.resilience.recent import StatusConfig
from gateway.resilience.retry import RetryBudgetConfig, RetryPolicy
from gateway.security.access_config import AccessConfig, resolve_admin_port
from gateway.security.ratelimit_config import RateLimitConfig
from gateway.shared.redis_config import RedisConfig
from gateway.shared.shared_config import SharedStateConfig
from gateway.status.config import StatusPageConfig
from gateway.tls_config import GatewayTls
from servicekit.metrics import resolve_port
from servicekit.ports import COMPONENT_PORTS, GATEWAY_PORT
from servicekit.server import ServerSettings
from servicekit.settings import RuleViolation, check_fields, section, setting, settings_of

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
        if not sep or not name.strip():
            raise ValueError(f"entry {entry!r} is not name=host:port")
        try:
            check_address(address.strip())
        except ValueError as exc:
            raise ValueError(f"entry {entry!r}: {exc}") from None
        specs.append(UpstreamSpec(name.strip(), address.strip(), tier))
    if not specs:
        raise ValueError("a chain needs at least one upstream")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("upstream names must be unique")
    return specs


CHAIN_FORM = (
    "comma-separated name=address, unique names; address: host:port, dns:///name:port "
    "(every pod of a headless Service) or ip:port|ip:port|... (balanced)"
)


def _chain_problem(text: str) -> str | None:
    try:
        parse_chain(text)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class ChainConfig:
    """Each component's fallback chain, tier 0 first."""

    embedder: str = setting(
        DEFAULT_CHAINS["embedder"],
        "embedder_chain",
        "The embedder fallback chain: comma-separated name=host:port, tier 0 first "
        "(an address may be dns:///name:port or ip:port|ip:port: balanced over all).",
        validate=_chain_problem,
        form=CHAIN_FORM,
    )
    retriever: str = setting(
        DEFAULT_CHAINS["retriever"],
        "retriever_chain",
        "The retriever fallback chain: comma-separated name=host:port, tier 0 first "
        "(an address may be dns:///name:port or ip:port|ip:port: balanced over all).",
        validate=_chain_problem,
        form=CHAIN_FORM,
    )
    generator: str = setting(
        DEFAULT_CHAINS["generator"],
        "generator_chain",
        "The generator fallback chain: comma-separated name=host:port, tier 0 first "
        "(an address may be dns:///name:port or ip:port|ip:port: balanced over all).",
        validate=_chain_problem,
        form=CHAIN_FORM,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        names = [spec.name for component in COMPONENTS for spec in self.specs(component)]
        if len(set(names)) != len(names):
            # Upstream names key breakers, metrics and GetSystemHealth.
            raise RuleViolation(
                "upstream names must be unique across {embedder}, {retriever} and {generator}"
            )

    def specs(self, component: str) -> list[UpstreamSpec]:
        """The component's chain, parsed (validated at load, so this cannot fail)."""
        chain: str = getattr(self, component)
        return parse_chain(chain)


@dataclass(frozen=True)
class DeadlineConfig:
    """How a request's time is budgeted across stages, tiers and attempts."""

    default_deadline_s: float = setting(
        5.0,
        "default_deadline_s",
        "Budget for a request whose caller sets no deadline.",
        unit="s",
        minimum=0.05,
        maximum=600,
    )
    reply_margin_s: float = setting(
        0.02,
        "reply_margin_s",
        "Time kept back from the caller's deadline to send the reply.",
        unit="s",
        minimum=0,
        maximum=5,
    )
    min_attempt_s: float = setting(
        0.02,
        "min_attempt_s",
        "No attempt starts with less time than this (outcome NO_TIME).",
        unit="s",
        minimum=0.001,
        maximum=10,
    )
    tier_reserve_s: float = setting(
        0.08,
        "tier_reserve_s",
        "Time each attempt leaves for every later tier and later stage, so a hanging "
        "upstream cannot starve the fallbacks behind it.",
        unit="s",
        minimum=0,
        maximum=10,
    )
    embed_timeout_s: float = setting(
        1.0, "embed_timeout_s", "Per-attempt timeout cap for Embed.", unit="s", minimum=0.01
    )
    retrieve_timeout_s: float = setting(
        1.0, "retrieve_timeout_s", "Per-attempt timeout cap for Search.", unit="s", minimum=0.01
    )
    generate_timeout_s: float = setting(
        3.0,
        "generate_timeout_s",
        "Per-attempt timeout cap for Generate.",
        unit="s",
        minimum=0.01,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.min_attempt_s + self.reply_margin_s >= self.default_deadline_s:
            # Otherwise no request without a deadline could ever make an attempt.
            raise RuleViolation("{min_attempt_s} + {reply_margin_s} must be < {default_deadline_s}")

    def per_try_cap_s(self, component: str) -> float:
        """The per-attempt timeout cap of a component's calls."""
        caps = {
            "embedder": self.embed_timeout_s,
            "retriever": self.retrieve_timeout_s,
            "generator": self.generate_timeout_s,
        }
        return caps[component]


@dataclass(frozen=True)
class QueryConfig:
    """Limits and defaults of a Query request."""

    default_top_k: int = setting(
        4,
        "default_top_k",
        "top_k when the request leaves it unset.",
        unit="documents",
        minimum=1,
        maximum=50,
    )
    max_query_chars: int = setting(
        2000,
        "max_query_chars",
        "Longest accepted query.",
        unit="characters",
        minimum=1,
        maximum=100000,
    )
    retry_after_s: float = setting(
        5.0,
        "retry_after_s",
        "retry_after advertised with the static 'temporarily unavailable' answer.",
        unit="s",
        minimum=0,
        maximum=3600,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class IngestConfig:
    """Limits and pacing of Ingest."""

    max_ingest_documents: int = setting(
        512,
        "max_ingest_documents",
        "Most documents per Ingest call.",
        unit="documents",
        minimum=1,
        maximum=100000,
    )
    max_document_chars: int = setting(
        1_000_000,
        "max_document_chars",
        "Longest accepted document text; longer documents fail alone with this limit named "
        "(documents are cut into chunks, so this is not the embedders' limit).",
        unit="characters",
        minimum=1,
    )
    batch_size: int = setting(
        64,
        "ingest_batch_size",
        "Chunks per Embed call and documents per ReplaceDocuments call during ingest.",
        unit="documents",
        minimum=1,
    )
    timeout_s: float = setting(
        30.0,
        "ingest_timeout_s",
        "Per-call timeout for Embed/ReplaceDocuments during ingest.",
        unit="s",
        minimum=0.1,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ChunkingConfig:
    """How ingest cuts documents into chunks (sizes in estimated tokens: ~4 characters each)."""

    chunk_size_tokens: int = setting(
        256,
        "chunk_size_tokens",
        "Largest chunk, in estimated tokens (characters / 4, rounded up; no tokenizer download). "
        "Documents are split at Markdown headings and paragraphs first, then by size.",
        unit="tokens",
        minimum=16,
        maximum=2000,
    )
    chunk_overlap_tokens: int = setting(
        40,
        "chunk_overlap_tokens",
        "Text repeated from the end of a chunk at the start of the next when a section is cut "
        "by size; must be smaller than chunk_size_tokens.",
        unit="tokens",
        minimum=0,
        maximum=1000,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.chunk_overlap_tokens >= self.chunk_size_tokens:
            raise RuleViolation("{chunk_overlap_tokens} must be < {chunk_size_tokens}")


@dataclass(frozen=True)
class UpstreamPolicy:
    """What guards every upstream besides the breaker's tuning."""

    breaker_enabled: bool = setting(True, "breaker_enabled", "Use a circuit breaker per upstream.")
    breaker_probe_interval_s: float = setting(
        0.5,
        "breaker_probe_interval_s",
        "How often an open breaker with no traffic gets a probe call (the upstream's most "
        "recent request, replayed); 0 = probe only with live traffic.",
        unit="s",
        minimum=0,
        maximum=600,
    )
    bulkhead_max_concurrent: int = setting(
        64,
        "bulkhead_max_concurrent",
        "In-flight calls per upstream; more go to the next tier.",
        unit="calls",
        minimum=1,
        maximum=100000,
    )
    skip_not_serving: bool = setting(
        True,
        "skip_not_serving",
        "Skip an upstream whose grpc.health.v1 Watch reports NOT_SERVING (outcome NOT_SERVING).",
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class HedgeConfig:
    """Hedged requests for idempotent calls (Embed, Search)."""

    enabled: bool = setting(True, "hedge_enabled", "Hedge idempotent calls (Embed, Search).")
    delay_s: float = setting(
        0.0,
        "hedge_delay_s",
        "Delay before the hedge; 0 = the slow upstream's observed p95 (no hedge until known).",
        unit="s",
        minimum=0,
    )
    min_delay_s: float = setting(
        0.005, "hedge_min_delay_s", "Smallest hedge delay.", unit="s", minimum=0
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class AdmissionConfig:
    """Load shedding at the front door."""

    max_inflight_requests: int = setting(
        256,
        "max_inflight_requests",
        "In-flight public requests; more are shed with RESOURCE_EXHAUSTED + RetryInfo.",
        unit="requests",
        minimum=1,
        maximum=100000,
    )
    queue_target_s: float = setting(
        0.1,
        "admission_queue_target_s",
        "Shed new queries while calls wait longer than this inside the gateway before it "
        "starts on them (measured by self-probes); 0 disables.",
        unit="s",
        minimum=0,
    )
    probe_interval_s: float = setting(
        0.02,
        "admission_probe_interval_s",
        "Pause between the gateway's self-probes while it is taking queries.",
        unit="s",
        minimum=0.001,
    )
    shed_retry_after_s: float = setting(
        0.5,
        "shed_retry_after_s",
        "RetryInfo delay sent with shed requests.",
        unit="s",
        minimum=0,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class CacheConfig:
    """Coalescing of identical queries and the answer cache."""

    coalesce_enabled: bool = setting(
        True, "coalesce_enabled", "Identical concurrent queries share one run."
    )
    ttl_s: float = setting(
        60.0,
        "cache_ttl_s",
        "How long a fresh answer is served from cache; 0 disables.",
        unit="s",
        minimum=0,
    )
    max_entries: int = setting(
        10000, "cache_max_entries", "Answers kept fresh in cache.", unit="answers", minimum=1
    )
    stale_ttl_s: float = setting(
        3600.0,
        "stale_ttl_s",
        "How long the last good answer may be served stale when every generator fails; 0 off.",
        unit="s",
        minimum=0,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class GatewayConfig:
    """Everything `python -m gateway` is configured with, validated as a whole at load."""

    port: int = setting(
        PORT, "port", "gRPC port of the public API.", unit="port", minimum=1, maximum=65535
    )
    server: ServerSettings = section(ServerSettings)
    chains: ChainConfig = section(ChainConfig)
    deadlines: DeadlineConfig = section(DeadlineConfig)
    query: QueryConfig = section(QueryConfig)
    ingest: IngestConfig = section(IngestConfig)
    chunking: ChunkingConfig = section(ChunkingConfig)
    upstream: UpstreamPolicy = section(UpstreamPolicy)
    breaker: BreakerConfig = section(BreakerConfig)
    retry: RetryPolicy = section(RetryPolicy)
    retry_budget: RetryBudgetConfig = section(RetryBudgetConfig)
    hedge: HedgeConfig = section(HedgeConfig)
    admission: AdmissionConfig = section(AdmissionConfig)
    cache: CacheConfig = section(CacheConfig)
    status: StatusConfig = section(StatusConfig)
    redis: RedisConfig = section(RedisConfig)
    outbox: OutboxConfig = section(OutboxConfig)
    feedback: FeedbackConfig = section(FeedbackConfig)
    shared: SharedStateConfig = section(SharedStateConfig)
    rate_limit: RateLimitConfig = section(RateLimitConfig)
    status_page: StatusPageConfig = section(StatusPageConfig)
    access: AccessConfig = section(AccessConfig)
    limits: InputLimits = section(InputLimits)
    tls: GatewayTls = section(GatewayTls)
    workers: int = setting(
        1,
        "workers",
        "Gateway processes sharing the gRPC port (SO_REUSEPORT) under one supervising parent; "
        "each has its own breakers, cache and metrics port (the metrics port + its index). "
        "1 = a single process, no parent.",
        unit="processes",
        minimum=1,
        maximum=64,
    )
    gc_gen0_threshold: int = setting(
        10000,
        "gc_gen0_threshold",
        "Allocations between the garbage collector's young-generation passes (Python's "
        "default is 700, which a query through the pipeline exceeds several times over); "
        "0 = Python's defaults (and no gc.freeze() of start-up objects).",
        unit="allocations",
        minimum=0,
        maximum=10_000_000,
    )
    bare: bool = setting(
        False,
        "bare",
        "Benchmark baseline: same upstream calls, no breakers, retries, hedging, bulkheads, "
        "coalescing or cache.",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.server.metrics_port == self.port:
            raise RuleViolation("{server.metrics_port} must differ from {port}")
        if self.server.health_port == self.port:
            raise RuleViolation("{server.health_port} must differ from {port}")
        first = resolve_port(self.server.metrics_port, self.port)
        admin = resolve_admin_port(self.access.admin_port, self.port)
        metrics_ports = range(first, first + self.workers) if first > 0 else range(0)
        if admin != 0 and (admin == self.port or admin in metrics_ports or admin > 65535):
            raise RuleViolation(
                "{access.admin_port} must be a valid port other than {port} and the "
                "/metrics ports ({server.metrics_port})"
            )
        if self.workers > 1 and first > 0:
            # Worker i serves /metrics on first + i: none of those may be the gRPC port.
            if first <= self.port < first + self.workers or first + self.workers - 1 > 65535:
                raise RuleViolation(
                    "{server.metrics_port} + i for i < {workers} (each worker's /metrics port) "
                    "must be valid ports other than {port}"
                )


SETTINGS = settings_of(GatewayConfig)
