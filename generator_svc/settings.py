"""Configuration of a generator process (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from servicekit.main import ComponentConfig, component_port
from servicekit.settings import setting, settings_of


@dataclass(frozen=True)
class GeneratorConfig(ComponentConfig):
    component: ClassVar[str] = "generator"

    port: int = component_port("generator")
    max_answer_chars: int = setting(
        700,
        "max_answer_chars",
        "Answer length limit when a request leaves max_answer_chars at 0.",
        unit="characters",
        minimum=1,
        maximum=1_000_000,
    )
    max_context_docs: int = setting(
        50,
        "max_context_docs",
        "Most context documents accepted in one request.",
        unit="documents",
        minimum=1,
        maximum=10_000,
    )
    stream_chunk_chars: int = setting(
        24,
        "stream_chunk_chars",
        "StreamGenerate sends the answer in deltas of about this many characters, cut after "
        "whole words.",
        unit="characters",
        minimum=1,
        maximum=100_000,
    )


SETTINGS = settings_of(GeneratorConfig)
