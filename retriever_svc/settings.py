"""Configuration of a retriever process (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from servicekit.limits import DocumentLimits, ReplyLimits
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
    max_text_chars: int = setting(
        200_000,
        "max_text_chars",
        "Longest document text (an ingested chunk is about a thousand characters) and "
        "longest query_text a call may carry.",
        unit="characters",
        minimum=1,
        maximum=10_000_000,
    )
    max_id_chars: int = setting(
        1024,
        "max_id_chars",
        "Longest document id, chunk document_id or embedding model id.",
        unit="characters",
        minimum=1,
        maximum=65536,
    )
    max_models: int = setting(
        8,
        "max_models",
        "Most embedding models (one vector index each) a dense retriever holds; a write "
        "naming one more model is refused, so a caller cannot make it grow an index per id.",
        unit="models",
        minimum=1,
        maximum=1000,
    )
    max_dimension: int = setting(
        8192,
        "max_dimension",
        "Most components an embedding (stored or query) may have.",
        unit="floats",
        minimum=1,
        maximum=65536,
    )
    documents: DocumentLimits = section(DocumentLimits)
    replies: ReplyLimits = section(ReplyLimits)
    snapshot_every: int = setting(
        500,
        "snapshot_every",
        "Write-ahead log records after which the store is compacted into a new snapshot.",
        unit="records",
        minimum=1,
        maximum=10_000_000,
    )
    dense_index: Literal["auto", "exact", "hnsw"] = setting(
        "auto",
        "dense_index",
        "How the primary (dense) retriever searches each model's vectors: exact (a full numpy "
        "scan), hnsw (an approximate HNSW graph; selective filters still scan exactly), or auto "
        "(hnsw, but an index smaller than ann_exact_below is scanned exactly).",
    )
    ann_exact_below: int = setting(
        20_000,
        "ann_exact_below",
        "With dense_index auto, a model index holding fewer vectors than this is searched "
        "exactly (as fast as the graph at that size, and recall 1).",
        unit="vectors",
        minimum=0,
        maximum=100_000_000,
    )
    ann_filter_exact_max: int = setting(
        20_000,
        "ann_filter_exact_max",
        "A filtered search whose filter matches at most this many vectors scans them exactly; "
        "a broader filter searches the graph, over-fetching until top_k matches are found.",
        unit="vectors",
        minimum=0,
        maximum=100_000_000,
    )
    ann_connectivity: int = setting(
        16,
        "ann_connectivity",
        "HNSW graph links per node (M): more raises recall and memory per vector.",
        unit="links",
        minimum=4,
        maximum=128,
    )
    ann_expansion_add: int = setting(
        128,
        "ann_expansion_add",
        "HNSW candidate list while inserting (efConstruction): more builds a better graph, slower.",
        unit="candidates",
        minimum=8,
        maximum=4096,
    )
    ann_expansion_search: int = setting(
        64,
        "ann_expansion_search",
        "HNSW candidate list while searching (efSearch; at least top_k is used): more raises "
        "recall and latency.",
        unit="candidates",
        minimum=8,
        maximum=4096,
    )
    ann_vector_type: Literal["f32", "f16"] = setting(
        "f16",
        "ann_vector_type",
        "How the HNSW index stores each vector component: f16 halves memory (cosine scores "
        "move by about 1e-3), f32 keeps them exact.",
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
