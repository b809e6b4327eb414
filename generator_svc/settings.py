"""Configuration of a generator process (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from servicekit.main import ComponentConfig, component_port
from servicekit.settings import RuleViolation, setting, settings_of


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
    max_query_chars: int = setting(
        16_384,
        "max_query_chars",
        "Longest query accepted (the gateway sends at most its own max_query_chars).",
        unit="characters",
        minimum=1,
        maximum=10_000_000,
    )
    max_context_chars: int = setting(
        1_000_000,
        "max_context_chars",
        "Most characters of context text (all documents together) accepted in one request.",
        unit="characters",
        minimum=1,
        maximum=100_000_000,
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

    backend: Literal["auto", "extractive", "template", "openai"] = setting(
        "auto",
        "backend",
        "Which answer generator this process runs: auto (primary: extractive, fallback: "
        "template), extractive, template, or openai (an OpenAI-compatible chat model; see the "
        "openai_* settings).",
    )
    openai_base_url: str = setting(
        "",
        "openai_base_url",
        "backend=openai: base URL of the OpenAI-compatible API, up to and including /v1 "
        "(e.g. http://127.0.0.1:8000/v1 for vLLM); the generator POSTs {base}/chat/completions.",
    )
    openai_model: str = setting(
        "",
        "openai_model",
        "backend=openai: the model name sent to the provider; also the answers' model id.",
    )
    openai_api_key_file: str = setting(
        "",
        "openai_api_key_file",
        "backend=openai: file holding the API key (e.g. a mounted Secret), read at start-up, "
        "surrounding whitespace stripped. The key may instead come from the environment "
        "variable HARAG_OPENAI_API_KEY, which is not a setting, so that --check-config and "
        "config files never show it. No key: none is sent.",
    )
    openai_max_tokens: int = setting(
        512,
        "openai_max_tokens",
        "backend=openai: most output tokens one answer may use (also capped by "
        "max_answer_chars at about 4 characters a token).",
        unit="tokens",
        minimum=1,
        maximum=1_000_000,
    )
    openai_temperature: float = setting(
        0.2,
        "openai_temperature",
        "backend=openai: sampling temperature.",
        minimum=0,
        maximum=2,
    )
    openai_context_tokens: int = setting(
        3000,
        "openai_context_tokens",
        "backend=openai: token budget for the context passages in the prompt, estimated at 4 "
        "characters a token (no tokenizer); later passages are left out, the last one cut.",
        unit="tokens",
        minimum=1,
        maximum=10_000_000,
    )
    openai_first_token_timeout_s: float = setting(
        20.0,
        "openai_first_token_timeout_s",
        "backend=openai: longest wait for the response and its first token; then the call "
        "fails UNAVAILABLE (PROVIDER_TIMEOUT). The caller's deadline still applies.",
        unit="seconds",
        minimum=0,
        above_minimum=True,
        maximum=3600,
    )
    openai_idle_timeout_s: float = setting(
        10.0,
        "openai_idle_timeout_s",
        "backend=openai: longest gap between two streamed chunks; then the call fails "
        "UNAVAILABLE (PROVIDER_TIMEOUT). The caller's deadline still applies.",
        unit="seconds",
        minimum=0,
        above_minimum=True,
        maximum=3600,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend == "openai" and not (
            self.openai_base_url.strip() and self.openai_model.strip()
        ):
            raise RuleViolation("{backend} = openai needs {openai_base_url} and {openai_model}")


SETTINGS = settings_of(GeneratorConfig)
