"""Layered, validated configuration: defaults < optional YAML file < environment < flags.

Each process declares its settings as a list of `Setting`s. Every setting has a key, a
default and a doc string (the README's configuration reference is generated from them),
and is read from the environment as `HARAG_<KEY>` (upper case). The file, given with
`--config` or `HARAG_CONFIG`, is a flat YAML mapping of keys. Unknown keys and bad values
stop the process with a message naming the key, where it came from and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "HARAG_"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid."""


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    doc: str
    kind: type = str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    validate: Callable[[Any], str | None] | None = None  # returns an error text or None

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper()

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        lo = "-inf" if self.minimum is None else f"{self.minimum:g}"
        hi = "inf" if self.maximum is None else f"{self.maximum:g}"
        if self.kind in (int, float):
            return f"a {'whole ' if self.kind is int else ''}number in [{lo}, {hi}]"
        return "a string"

    def coerce(self, raw: Any, source: str) -> Any:
        def fail(extra: str = "") -> ConfigError:
            return ConfigError(
                f"config error: {self.key} = {raw!r} (from {source}) is invalid: "
                f"must be {self.allowed()}{extra}"
            )

        value: Any
        try:
            if self.kind is bool:
                value = _parse_bool(raw)
            elif self.kind is int:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                value = int(raw)
            elif self.kind is float:
                if isinstance(raw, bool):
                    raise ValueError
                value = float(raw)
            else:
                value = str(raw)
        except (TypeError, ValueError):
            raise fail() from None
        if self.choices and value not in self.choices:
            raise fail()
        if self.minimum is not None and value < self.minimum:
            raise fail()
        if self.maximum is not None and value > self.maximum:
            raise fail()
        if self.validate is not None and (problem := self.validate(value)):
            raise fail(f" ({problem})")
        return value


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


class Config(Mapping[str, Any]):
    """Resolved settings, readable as `cfg.port` or `cfg["port"]`; remembers each value's source."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self._values = values
        self._sources = sources

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):  # noqa: ANN204 - Mapping protocol
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def source(self, key: str) -> str:
        return self._sources[key]


def load(
    settings: Iterable[Setting],
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Resolves every setting from defaults < file < environment < overrides."""
    env = os.environ if env is None else env
    specs = {s.key: s for s in settings}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in specs.values():
        values[spec.key], sources[spec.key] = spec.default, "default"

    config_file = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    if config_file:
        path = Path(config_file)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config error: cannot read config file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config error: {path} must hold a mapping of settings")
        for key, raw in data.items():
            if key not in specs:
                raise ConfigError(
                    f"config error: unknown key {key!r} in {path}; known keys: "
                    + ", ".join(sorted(specs))
                )
            values[key] = specs[key].coerce(raw, f"file {path}")
            sources[key] = f"file {path}"

    for spec in specs.values():
        if spec.env_var in env:
            values[spec.key] = spec.coerce(env[spec.env_var], f"env {spec.env_var}")
            sources[spec.key] = f"env {spec.env_var}"

    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in specs:
            raise ConfigError(f"config error: unknown key {key!r}")
        values[key] = specs[key].coerce(raw, f"flag --{key.replace('_', '-')}")
        sources[key] = f"flag --{key.replace('_', '-')}"
    return Config(values, sources)


def reference_table(settings: Iterable[Setting]) -> str:
    """Markdown table of settings, for the README's configuration reference."""
    rows = ["| key | env | default | allowed | meaning |", "|---|---|---|---|---|"]
    for s in settings:
        default = "" if s.default is None else f"`{s.default}`"
        rows.append(f"| `{s.key}` | `{s.env_var}` | {default} | {s.allowed()} | {s.doc} |")
    return "\n".join(rows)
