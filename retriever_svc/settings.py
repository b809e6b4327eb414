"""Configuration of a retriever process (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from servicekit.limits import DocumentLimits, ReplyLimits
from servicekit.main import ComponentConfig, component_port
from servicekit.settings import section, setting, settings_of


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


def data_dir(cfg: RetrieverConfig) -> Path:
    """Where the index lives: `data_dir`, or var/data/retriever-<impl>."""
    return Path(cfg.data_dir) if cfg.data_dir else Path("var", "data", cfg.name)


SETTINGS = settings_of(RetrieverConfig)
