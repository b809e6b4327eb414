"""Configuration of an embedder process (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from servicekit.main import ComponentConfig, component_port
from servicekit.settings import setting, settings_of


@dataclass(frozen=True)
class EmbedderConfig(ComponentConfig):
    component: ClassVar[str] = "embedder"

    port: int = component_port("embedder")
    max_batch_size: int = setting(
        256,
        "max_batch_size",
        "Most texts accepted in one Embed call.",
        unit="texts",
        minimum=1,
        maximum=100_000,
    )
    max_text_chars: int = setting(
        8192,
        "max_text_chars",
        "Longest text accepted by Embed.",
        unit="characters",
        minimum=1,
        maximum=10_000_000,
    )
    dimension: int = setting(
        0,
        "dimension",
        "Vector dimension; 0 = the implementation's default (primary 384, fallback 128). "
        "The model id names it (hash-ngram-512), so a changed dimension is a new index.",
        unit="floats",
        minimum=0,
        maximum=65536,
    )


SETTINGS = settings_of(EmbedderConfig)
