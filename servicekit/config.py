"""Layered, validated configuration: defaults < YAML file < environment < flags.

Settings are declared once on dataclass fields (servicekit.settings). `load_config` resolves
every setting of a configuration class from its layers, checks each value, builds the typed
dataclasses and so checks every rule between values, before the process opens anything: any
problem is a `ConfigError` whose text is one line naming the setting, the value, where it
came from (default, file <path>, env HARAG_X, flag --x) and what is allowed. The file, given
with `--config` or `HARAG_CONFIG`, is a flat YAML mapping of keys; an unknown key is an
error. `unknown_variables` lists the `HARAG_*` environment variables that are no setting,
each with the closest known name (a warning: a typo must not pass silently).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from servicekit.settings import (
    ENV_PREFIX,
    SECTION_METADATA,
    SETTING_METADATA,
    ConfigError,
    RuleViolation,
    SectionDoc,
    Setting,
    check_fields,
    declared,
    reference_table,
    section,
    sections_of,
    setting,
    settings_of,
    show_value,
)

CONFIG_FILE_VARIABLE = "HARAG_CONFIG"

# HARAG_* variables that are read outside the settings, so they are not typos:
# the loader's own file pointer, the operator CLI's addresses, test and client knobs.
NON_SETTING_VARIABLES: frozenset[str] = frozenset(
    {
        CONFIG_FILE_VARIABLE,  # the YAML file (servicekit.config)
        "HARAG_GATEWAY",  # harag CLI and clients: where the gateway is
        "HARAG_ADMIN_ADDR",  # harag CLI: where the gateway's admin listener is
        "HARAG_API_KEY",  # harag CLI, Python and Node clients: the API key to send
        "HARAG_JAEGER_UI",  # harag CLI: link to traces
        "HARAG_TRACE_VIEWER",  # harag CLI: trace viewer query API
        "HARAG_PROTOS",  # Node client: where the .proto files are
        "HARAG_CHAOS_SEED",  # chaos tests: replay a schedule
    }
)


# -- resolving: defaults < file < env < flags --------------------------------------------


class Resolved:
    """Raw layered values of a flat list of settings, each with where it came from."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self.values = values
        self.sources = sources

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def source(self, key: str) -> str:
        return self.sources[key]


def load(
    settings: Iterable[Setting],
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Resolved:
    """Resolves and coerces every setting from defaults < file < environment < overrides.

    Per-value checks only; `load_config` also builds the typed dataclasses and so checks the
    rules between values. The file comes from `config_file`, else `HARAG_CONFIG`.
    """
    env = os.environ if env is None else env
    specs = {s.key: s for s in settings}
    values: dict[str, Any] = {key: spec.default for key, spec in specs.items()}
    sources: dict[str, str] = {key: "default" for key in specs}

    config_file = config_file or env.get(CONFIG_FILE_VARIABLE) or None
    if config_file:
        path = Path(config_file)
        for key, raw in _read_file(path).items():
            if key not in specs:
                raise ConfigError(
                    f"config error: unknown key {key!r} in {path}{_suggest(str(key), specs)}"
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
            raise ConfigError(f"config error: unknown flag key {key!r}")
        values[key] = specs[key].coerce(raw, f"flag {specs[key].flag}")
        sources[key] = f"flag {specs[key].flag}"
    return Resolved(values, sources)


def _read_file(path: Path) -> dict[Any, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"config error: cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"config error: config file {path} is not valid YAML{where}: {problem}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config error: config file {path} must hold a mapping of settings (key: value), "
            f"not a {type(data).__name__}"
        )
    return data


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else "; see the configuration reference"


def unknown_variables(
    settings: Iterable[Setting], env: Mapping[str, str] | None = None, *, process: str = "this"
) -> list[str]:
    """One warning line per `HARAG_*` variable that is no setting, naming the closest one.

    Unknown variables do not stop a process (other tools share the prefix), but a typo must
    not pass silently: the setting the operator meant would keep its default.
    """
    env = os.environ if env is None else env
    known = {s.env_var for s in settings}
    # Compared without the shared prefix, which would make every name look alike.
    keys = sorted(name.removeprefix(ENV_PREFIX) for name in known)
    warnings = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known or name in NON_SETTING_VARIABLES:
            continue
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), keys, n=1, cutoff=0.6)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        # "Not a setting of <process>" rather than "unknown": a shell that starts the whole
        # mesh passes the gateway's variables to the components too.
        warnings.append(
            f"config warning: {name} is not a setting of the {process} process and is ignored{hint}"
        )
    return warnings


# -- building the typed configuration -----------------------------------------------------

C = TypeVar("C")


@dataclass(frozen=True)
class Loaded(Generic[C]):
    """A validated configuration with the source of each of its values."""

    config: C
    settings: tuple[Setting, ...]
    resolved: Resolved

    def source(self, key: str) -> str:
        return self.resolved.sources[key]

    def describe(self) -> list[str]:
        """One line per setting: `key = value (source)`, for `--check-config`."""
        return [
            f"{s.key} = {show_value(self.resolved.values[s.key])} ({self.resolved.sources[s.key]})"
            for s in self.settings
        ]


def load_config(
    schema: type[C],
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Loaded[C]:
    """Resolves every setting of `schema` and builds it: every value and every rule between
    values is checked here, before the process opens anything. Raises ConfigError."""
    fields = declared(schema)
    settings = tuple(d.setting for d in fields)
    resolved = load(settings, config_file=config_file, env=env, overrides=overrides)
    keys = {d.path: d.setting.key for d in fields}
    config = _build(schema, "", resolved, keys)
    return Loaded(config, settings, resolved)


def _build(cls: type[C], prefix: str, resolved: Resolved, keys: Mapping[str, str]) -> C:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(typing.cast(Any, cls)):
        if SECTION_METADATA in f.metadata:
            kwargs[f.name] = _build(hints[f.name], f"{prefix}{f.name}.", resolved, keys)
        elif SETTING_METADATA in f.metadata:
            kwargs[f.name] = resolved.values[keys[prefix + f.name]]
    try:
        return cls(**kwargs)
    except RuleViolation as violation:
        raise _rule_error(violation, prefix, resolved, keys) from None


def _rule_error(
    violation: RuleViolation, prefix: str, resolved: Resolved, keys: Mapping[str, str]
) -> ConfigError:
    names = {f: keys.get(prefix + f, f) for f in violation.fields}
    involved = [
        f"{key} = {show_value(resolved.values[key])} (from {resolved.sources[key]})"
        for key in dict.fromkeys(names.values())
        if key in resolved.values
    ]
    return ConfigError(f"config error: {violation.render(names)}; got " + ", ".join(involved))


__all__ = [
    "CONFIG_FILE_VARIABLE",
    "ENV_PREFIX",
    "NON_SETTING_VARIABLES",
    "ConfigError",
    "Loaded",
    "Resolved",
    "RuleViolation",
    "SectionDoc",
    "Setting",
    "check_fields",
    "load",
    "load_config",
    "reference_table",
    "section",
    "sections_of",
    "setting",
    "settings_of",
    "unknown_variables",
]
