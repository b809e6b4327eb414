"""Configuration of a retriever process (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from servicekit.main import ComponentConfig, component_port
from servicekit.settings import section, setting, settings_of


@dataclass(frozen=True)
class MilvusSettings:
    """Where the dense index lives when vector_backend=milvus (a Milvus standalone or cluster)."""

    uri: str = setting(
        "http://127.0.0.1:19530",
        "milvus_uri",
        "vector_backend=milvus: address of the Milvus proxy (the cluster's Service), "
        "http://host:port or https://host:port.",
    )
    user: str = setting(
        "",
        "milvus_user",
        "vector_backend=milvus: user name when Milvus authentication is on (empty: none).",
    )
    password_file: str = setting(
        "",
        "milvus_password_file",
        "vector_backend=milvus: file holding the user's password or an API token (e.g. a "
        "mounted Secret), read at start-up, surrounding whitespace stripped. It may instead "
        "come from the environment variable HARAG_MILVUS_PASSWORD, which is not a setting, so "
        "that --check-config and config files never show it.",
        unit="path",
    )
    database: str = setting(
        "default", "milvus_database", "vector_backend=milvus: the Milvus database to use."
    )
    collection_prefix: str = setting(
        "harag_",
        "milvus_collection_prefix",
        "vector_backend=milvus: prefix of every collection this retriever creates (one per "
        "embedding model and dimension, plus <prefix>catalog), so several deployments can "
        "share a cluster.",
        validate=lambda v: (
            None
            if v and v[0].isalpha() and v.replace("_", "a").isalnum()
            else "must start with a letter and hold only letters, digits and _"
        ),
    )
    timeout_s: float = setting(
        5.0,
        "milvus_timeout_s",
        "vector_backend=milvus: deadline of each call to Milvus; past it the RPC fails "
        "UNAVAILABLE and the gateway's breaker and fallback take over.",
        unit="seconds",
        minimum=0.1,
        maximum=600,
    )
    consistency: Literal["Session", "Strong"] = setting(
        "Session",
        "milvus_consistency",
        "vector_backend=milvus: consistency level of reads. Session: a Search sees every "
        "write this retriever process acknowledged before it, without waiting otherwise; "
        "writes of other replicas show within the engine's bounded staleness. Strong: every "
        "read sees every acknowledged write of any replica, at up to one engine time tick "
        "(200 ms by default) per read.",
    )
    hnsw_m: int = setting(
        16,
        "milvus_hnsw_m",
        "vector_backend=milvus: HNSW graph degree (M) of a new collection's vector index.",
        minimum=4,
        maximum=64,
    )
    hnsw_ef_construction: int = setting(
        200,
        "milvus_hnsw_ef_construction",
        "vector_backend=milvus: HNSW efConstruction of a new collection's vector index.",
        minimum=8,
        maximum=512,
    )
    search_ef: int = setting(
        128,
        "milvus_search_ef",
        "vector_backend=milvus: HNSW ef of each search (raised to top_k when smaller); higher "
        "is slower with better recall.",
        minimum=1,
        maximum=32768,
    )


@dataclass(frozen=True)
class RetrieverConfig(ComponentConfig):
    component: ClassVar[str] = "retriever"

    port: int = component_port("retriever")
    data_dir: str = setting(
        "",
        "data_dir",
        "Directory holding the persisted index (snapshot + write-ahead log); empty means "
        "var/data/retriever-<impl> under the working directory.",
        unit="path",
    )
    max_top_k: int = setting(
        50,
        "max_top_k",
        "Largest top_k a Search may ask for.",
        unit="documents",
        minimum=1,
        maximum=10000,
    )
    max_upsert_batch: int = setting(
        1024,
        "max_upsert_batch",
        "Most documents one Upsert call, or chunks one ReplaceDocuments call, may carry.",
        unit="documents",
        minimum=1,
        maximum=1_000_000,
    )
    max_list_page_size: int = setting(
        1000,
        "max_list_page_size",
        "Largest page_size a ListStoredDocuments call may ask for (0 asks for 100).",
        unit="documents",
        minimum=1,
        maximum=100_000,
    )
    snapshot_every: int = setting(
        500,
        "snapshot_every",
        "Write-ahead log records after which the store is compacted into a new snapshot.",
        unit="records",
        minimum=1,
        maximum=10_000_000,
    )
    vector_backend: Literal["embedded", "milvus"] = setting(
        "embedded",
        "vector_backend",
        "Where the primary (dense) retriever keeps its vectors: embedded (in this process, "
        "persisted under data_dir) or milvus (a Milvus server or cluster, see the milvus_* "
        "settings; data_dir is then unused). The fallback (lexical) retriever always stays "
        "embedded, so a vector database outage still leaves BM25.",
    )
    milvus: MilvusSettings = section(MilvusSettings)


def data_dir(cfg: RetrieverConfig) -> Path:
    """Where the index lives: `data_dir`, or var/data/retriever-<impl>."""
    return Path(cfg.data_dir) if cfg.data_dir else Path("var", "data", cfg.name)


SETTINGS = settings_of(RetrieverConfig)
