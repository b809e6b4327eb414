"""Configuration of a retriever process (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from servicekit.main import ComponentConfig, component_port
from servicekit.settings import setting, settings_of


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


def data_dir(cfg: RetrieverConfig) -> Path:
    """Where the index lives: `data_dir`, or var/data/retriever-<impl>."""
    return Path(cfg.data_dir) if cfg.data_dir else Path("var", "data", cfg.name)


SETTINGS = settings_of(RetrieverConfig)
