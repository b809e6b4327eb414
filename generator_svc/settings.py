"""Configuration of a generator process (env HARAG_<KEY>, file, or flags)."""

from __future__ import annotations

from servicekit.config import Setting
from servicekit.main import component_settings
from servicekit.ports import COMPONENT_PORTS

PORTS = COMPONENT_PORTS["generator"]

SETTINGS: list[Setting] = component_settings(
    "generator",
    PORTS,
    [
        Setting(
            "max_answer_chars", 700,
            "Answer length limit, in characters, when a request leaves max_answer_chars at 0.",
            kind=int, minimum=1, maximum=1_000_000,
        ),
        Setting(
            "max_context_docs", 50, "Most context documents accepted in one request.",
            kind=int, minimum=1, maximum=10_000,
        ),
        Setting(
            "stream_chunk_chars", 24,
            "StreamGenerate sends the answer in deltas of about this many characters, "
            "cut after whole words.",
            kind=int, minimum=1, maximum=100_000,
        ),
    ],
)
