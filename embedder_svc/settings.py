"""Configuration of an embedder process (env HARAG_<KEY>, file, or flags)."""

from __future__ import annotations

from servicekit.config import Setting
from servicekit.main import component_settings
from servicekit.ports import COMPONENT_PORTS

PORTS = COMPONENT_PORTS["embedder"]

SETTINGS: list[Setting] = component_settings(
    "embedder",
    PORTS,
    [
        Setting(
            "max_batch_size",
            256,
            "Most texts accepted in one Embed call.",
            kind=int,
            minimum=1,
            maximum=100_000,
        ),
        Setting(
            "max_text_chars",
            8192,
            "Longest text accepted by Embed, in characters.",
            kind=int,
            minimum=1,
            maximum=10_000_000,
        ),
        Setting(
            "dimension",
            0,
            "Vector dimension; 0 = the implementation's default (primary 384, fallback 128). "
            "The model id names it (hash-ngram-512), so a changed dimension is a new index.",
            kind=int,
            minimum=0,
            maximum=65536,
        ),
    ],
)
