"""The answer generators a generator process can serve, and the factory that picks one.

The servicer runs every backend through the asynchronous, streaming protocol of
`generator_svc.backends.streaming` (deltas, then one final). The local backends here are plain
synchronous Python (no gRPC): they get the query, the context texts best first and a
character budget, and return the whole answer, which `LocalStreaming` streams. The openai
backend (`generator_svc.backends.openai_chat`) streams a chat model's tokens as they come.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

NO_CONTEXT_TEXT = "I couldn't find this in the indexed documents."


class Finish(enum.Enum):
    STOP = "stop"
    LENGTH = "length"  # the answer was cut at the character budget
    NO_CONTEXT = "no_context"  # nothing in the context answers the query; the text says so


@dataclass(frozen=True)
class Answer:
    text: str
    finish: Finish
    citations: tuple[int, ...]  # 1-based context indexes, in order of first use


class Generator(Protocol):
    @property
    def model(self) -> str:
        """Id of the generation method, e.g. "extractive-v1"."""
        ...

    def generate(self, query: str, context: Sequence[str], max_answer_chars: int) -> Answer:
        """Answers `query` from `context` (best first; [n] cites context[n-1]).

        Deterministic, thread-safe, and never longer than max_answer_chars (>= 1).
        """
        ...


def _extractive() -> Generator:
    from generator_svc.backends.extractive import ExtractiveGenerator

    return ExtractiveGenerator()


def _template() -> Generator:
    from generator_svc.backends.template import TemplateGenerator

    return TemplateGenerator()


BACKENDS: dict[str, Callable[[], Generator]] = {
    "extractive": _extractive,
    "template": _template,
}
# Which backend each deployment tier runs by default.
IMPL_BACKENDS = {"primary": "extractive", "fallback": "template"}


def create(name: str) -> Generator:
    """Builds a backend by tier ("primary"/"fallback") or backend name."""
    backend = IMPL_BACKENDS.get(name, name)
    try:
        return BACKENDS[backend]()
    except KeyError:
        known = ", ".join([*IMPL_BACKENDS, *BACKENDS])
        raise ValueError(f"unknown generator {name!r}; known: {known}") from None
