"""The gateway's settings: upstream chains, deadlines and limits (resilience knobs join later).

Every setting is documented with its default; env var `HARAG_<KEY>`, or a YAML file of
flat keys via `--config`/`HARAG_CONFIG` (the Kubernetes ConfigMap ships such a file).
"""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.config import Setting
from servicekit.server import COMMON_SETTINGS

PORT = 50051
COMPONENTS = ("embedder", "retriever", "generator")
DEFAULT_CHAINS = {
    "embedder": "embedder-primary=127.0.0.1:50061,embedder-fallback=127.0.0.1:50062",
    "retriever": "retriever-primary=127.0.0.1:50071,retriever-fallback=127.0.0.1:50072",
    "generator": "generator-primary=127.0.0.1:50081,generator-fallback=127.0.0.1:50082",
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
        0.05,
        "No attempt starts with less time than this; also the time reserved per later tier/stage.",
        kind=float,
        minimum=0.001,
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
    Setting(
        "skip_not_serving",
        True,
        "Skip an upstream whose grpc.health.v1 Watch reports NOT_SERVING (outcome NOT_SERVING).",
        kind=bool,
    ),
]
