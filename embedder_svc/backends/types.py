"""Types shared by the embedding backends."""

from __future__ import annotations

from typing import Literal

InputType = Literal["unspecified", "query", "passage"]
"""What a text is (EmbedRequest.input_type): models that embed queries and passages
differently (E5 prefixes, Cohere/Voyage/NVIDIA input_type) use it; others ignore it."""


class BackendUnavailable(RuntimeError):
    """A backend cannot run on this machine (e.g. a native engine that needs AVX2)."""
