"""The price table: what a model call costs, per 1K prompt and completion tokens.

The `price_table` setting is either inline JSON or the path of a YAML/JSON file, mapping a
model id (as the receipt's Attempt.model names it) to its prices:
`{"gpt-4o-mini": {"prompt_per_1k": 0.00015, "completion_per_1k": 0.0006}}`. A model missing
from the table costs nothing (the local models are free to run per call).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PRICE_KEYS = ("prompt_per_1k", "completion_per_1k")


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1000 tokens of one model."""

    prompt_per_1k: float
    completion_per_1k: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.prompt_per_1k + completion_tokens * self.completion_per_1k
        ) / 1000


class PriceTableError(ValueError):
    """The price table cannot be read or has a malformed entry."""


def _source_text(value: str) -> str:
    text = value.strip()
    if text.startswith("{"):
        return text
    path = Path(text)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceTableError(f"cannot read {path}: {exc.strerror or exc}") from exc


def parse_price_table(value: str) -> dict[str, ModelPrice]:
    """The table named by the setting ("" = no prices); raises PriceTableError."""
    if not value.strip():
        return {}
    text = _source_text(value)
    try:
        data: Any = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PriceTableError(f"not valid JSON/YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PriceTableError("must map model ids to {prompt_per_1k, completion_per_1k}")
    table: dict[str, ModelPrice] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != set(PRICE_KEYS):
            raise PriceTableError(f"model {model!r}: needs exactly {', '.join(PRICE_KEYS)}")
        prices = [entry[key] for key in PRICE_KEYS]
        if not all(
            isinstance(p, int | float) and not isinstance(p, bool) and p >= 0 for p in prices
        ):
            raise PriceTableError(f"model {model!r}: prices must be numbers >= 0")
        table[str(model)] = ModelPrice(float(prices[0]), float(prices[1]))
    return table


def price_table_problem(value: str) -> str | None:
    """For the setting's validation: what is wrong with the table, or None."""
    try:
        parse_price_table(value)
    except PriceTableError as exc:
        return str(exc)
    return None
