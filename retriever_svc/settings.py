"""The retriever process's settings (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from pathlib import Path

from servicekit.config import Config, Setting
from servicekit.main import component_settings
from servicekit.ports import COMPONENT_PORTS

PORTS = COMPONENT_PORTS["retriever"]

EXTRA_SETTINGS = [
    Setting(
        "data_dir", "",
        "Directory holding the persisted index (snapshot + write-ahead log); empty means "
        "var/data/retriever-<impl> under the working directory.",
    ),
    Setting(
        "max_top_k", 50, "Largest top_k a Search may ask for.", kind=int, minimum=1, maximum=10000,
    ),
    Setting(
        "max_upsert_batch", 1024, "Most documents one Upsert call may carry.",
        kind=int, minimum=1, maximum=1_000_000,
    ),
    Setting(
        "snapshot_every", 500,
        "Write-ahead log records after which the store is compacted into a new snapshot.",
        kind=int, minimum=1, maximum=10_000_000,
    ),
]

SETTINGS = component_settings("retriever", PORTS, EXTRA_SETTINGS)


def data_dir(cfg: Config) -> Path:
    return Path(cfg.data_dir) if cfg.data_dir else Path("var", "data", f"retriever-{cfg.impl}")
