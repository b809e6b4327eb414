"""Declared-once, typed, validated configuration: defaults < YAML file < environment < flags.

A process's configuration is a tree of frozen dataclasses. Each configurable field is
declared once, with `setting(...)`: its key, default, doc string, unit and bounds live in the
field's metadata, and its type comes from the annotation. From that one declaration come:

- the environment variable (`HARAG_<KEY>`) and the YAML file key (`<key>`),
- the coercion and range check of a raw value, with an error naming where it came from,
- the README's configuration reference (`reference_table`),
- the dataclass's own validation when it is built in code (`check_fields`).

Rules that tie several fields together are written once, in the dataclass's
`__post_init__`, as a `RuleViolation` whose text names the fields as `{placeholders}`; the
loader turns that into one line naming every setting involved, its value and its source.

`load_config` resolves and validates everything before anything starts: any bad value is a
`ConfigError` whose text is a single line. `unknown_variables` lists the `HARAG_*`
environment variables that match no setting, each with the closest known name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import string
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import yaml

ENV_PREFIX = "HARAG_"
CONFIG_FILE_VARIABLE = "HARAG_CONFIG"

# HARAG_* variables that are read outside the settings, so they are not typos:
# the loader's own file pointer, the operator CLI's addresses, test and client knobs.
NON_SETTING_VARIABLES: frozenset[str] = frozenset(
    {
        CONFIG_FILE_VARIABLE,  # the YAML file (servicekit.config)
        "HARAG_GATEWAY",  # harag CLI and clients: where the gateway is
        "HARAG_JAEGER_UI",  # harag CLI: link to traces
        "HARAG_TRACE_VIEWER",  # harag CLI: trace viewer query API
        "HARAG_PROTOS",  # Node client: where the .proto files are
        "HARAG_CHAOS_SEED",  # chaos tests: replay a schedule
    }
)

_SETTING = "harag.setting"
_SECTION = "harag.section"

Kind = type[bool] | type[int] | type[float] | type[str]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid. Its text is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class RuleViolation(ValueError):
    """A dataclass's fields break a rule. `rule` names the fields as `{field}` placeholders
    (a dotted path for a field of a nested section), so the loader can name the settings."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.fields = tuple(
            name for _, name, _, _ in string.Formatter().parse(rule) if name is not None
        )
        super().__init__(self.render({name: name for name in self.fields}))

    def render(self, names: Mapping[str, str]) -> str:
        return self.rule.format_map({f: names.get(f, f) for f in self.fields})


@dataclass(frozen=True)
class Setting:
    """One configurable value: key (file key; env var `HARAG_<KEY>`), default, doc, type, bounds."""

    key: str
    default: Any
    doc: str
    kind: Kind = str
    unit: str = ""
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False
    """True: the minimum itself is not allowed (an open interval)."""
    below_maximum: bool = False
    """True: the maximum itself is not allowed (an open interval)."""
    validate: Callable[[Any], str | None] | None = None
    """Extra check of a coerced value; returns what is wrong, or None."""
    form: str = ""
    """What `validate` accepts, in words (shown as the allowed values)."""

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def allowed(self) -> str:
        if self.form:
            return self.form
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        if self.kind in (int, float):
            lo = "(-inf" if self.minimum is None else ("(" if self.above_minimum else "[")
            lo += "" if self.minimum is None else _number(self.minimum)
            hi = "inf)" if self.maximum is None else _number(self.maximum)
            hi += "" if self.maximum is None else (")" if self.below_maximum else "]")
            return f"a {'whole ' if self.kind is int else ''}number in {lo}, {hi}"
        return "a string"

    def problem(self, value: Any) -> str | None:
        """What is wrong with an already-typed value, or None."""
        if self.kind is float and isinstance(value, float) and not math.isfinite(value):
            return ""
        if self.choices and value not in self.choices:
            return ""
        if self.minimum is not None and (
            value < self.minimum or (self.above_minimum and value == self.minimum)
        ):
            return ""
        if self.maximum is not None and (
            value > self.maximum or (self.below_maximum and value == self.maximum)
        ):
            return ""
        if self.validate is not None and (extra := self.validate(value)):
            return f" ({extra})"
        return None

    def coerce(self, raw: Any, source: str) -> Any:
        """The typed value of `raw` (from `source`), or a ConfigError naming all three."""

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
                if isinstance(raw, (dict, list)):
                    raise ValueError
                value = str(raw)
        except (TypeError, ValueError):
            raise fail() from None
        if (problem := self.problem(value)) is not None:
            raise fail(problem)
        return value


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# -- declaring settings on dataclass fields ---------------------------------------------


def setting(
    default: Any,
    key: str,
    doc: str,
    *,
    unit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    above_minimum: bool = False,
    below_maximum: bool = False,
    validate: Callable[[Any], str | None] | None = None,
    form: str = "",
) -> Any:
    """A dataclass field that is also a setting. Type (and choices, for a Literal) come from
    the field's annotation; everything else is declared here, once."""
    spec = {
        "key": key,
        "doc": doc,
        "unit": unit,
        "minimum": minimum,
        "maximum": maximum,
        "above_minimum": above_minimum,
        "below_maximum": below_maximum,
        "validate": validate,
        "form": form,
    }
    return dataclasses.field(default=default, metadata={_SETTING: spec})


def section(cls: type[Any]) -> Any:
    """A dataclass field holding a nested group of settings (built from its defaults)."""
    return dataclasses.field(default_factory=cls, metadata={_SECTION: True})


@dataclass(frozen=True)
class _Declared:
    path: str
    """Dotted field path from the root dataclass, e.g. "breaker.window_size"."""
    setting: Setting


_DECLARED: dict[tuple[type[Any], str], tuple[_Declared, ...]] = {}


def _declared(cls: type[Any], prefix: str = "") -> tuple[_Declared, ...]:
    """The settings of a dataclass and its sections (cached: a class's fields do not change)."""
    if (cls, prefix) not in _DECLARED:
        _DECLARED[cls, prefix] = _find_declared(cls, prefix)
    return _DECLARED[cls, prefix]


def _find_declared(cls: type[Any], prefix: str) -> tuple[_Declared, ...]:
    hints = typing.get_type_hints(cls)
    found: list[_Declared] = []
    for f in dataclasses.fields(cls):
        if _SECTION in f.metadata:
            found += _declared(hints[f.name], f"{prefix}{f.name}.")
        elif _SETTING in f.metadata:
            kind, choices = _kind_of(hints[f.name], cls, f.name)
            spec = dict(f.metadata[_SETTING])
            found.append(
                _Declared(
                    prefix + f.name,
                    Setting(default=f.default, kind=kind, choices=choices, **spec),
                )
            )
    return tuple(found)


def _kind_of(hint: Any, cls: type[Any], name: str) -> tuple[Kind, tuple[str, ...] | None]:
    if typing.get_origin(hint) is Literal:
        return str, tuple(str(a) for a in typing.get_args(hint))
    if hint in (bool, int, float, str):
        return typing.cast(Kind, hint), None
    raise TypeError(f"{cls.__name__}.{name}: a setting must be bool, int, float, str or Literal")


def settings_of(cls: type[Any]) -> list[Setting]:
    """Every setting declared on `cls` and its sections, in declaration order."""
    return [d.setting for d in _declared(cls)]


@dataclass(frozen=True)
class SectionDoc:
    path: str
    """Field path of the section from the root ("" for the root's own settings)."""
    cls: type[Any]
    settings: tuple[Setting, ...]


def sections_of(cls: type[Any], prefix: str = "") -> list[SectionDoc]:
    """The root's own settings, then each section's (depth first), for documentation."""
    hints = typing.get_type_hints(cls)
    own = tuple(d.setting for d in _declared(cls, prefix) if "." not in d.path[len(prefix) :])
    docs = [SectionDoc(prefix.rstrip("."), cls, own)] if own else []
    for f in dataclasses.fields(cls):
        if _SECTION in f.metadata:
            docs += sections_of(hints[f.name], f"{prefix}{f.name}.")
    return docs


def check_fields(instance: Any) -> None:
    """Validates each declared field of a dataclass instance against its own declaration.

    Call from `__post_init__`: a config built in code gets the same bounds as one loaded
    from the environment. Raises RuleViolation naming the first bad field.
    """
    for d in _declared(type(instance)):
        if "." in d.path:
            continue  # a section validates itself when it is built
        value = getattr(instance, d.path)
        if d.setting.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not _has_kind(value, d.setting.kind) or d.setting.problem(value) is not None:
            raise RuleViolation(f"{{{d.path}}} must be {d.setting.allowed()}, not {value!r}")


def _has_kind(value: Any, kind: Kind) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, kind)


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
            f"config warning: {name} is not a setting of the {process} process and is "
            f"ignored{hint}"
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
            f"{s.key} = {_show(self.resolved.values[s.key])} ({self.resolved.sources[s.key]})"
            for s in self.settings
        ]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value != "" else "''"


def load_config(
    schema: type[C],
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Loaded[C]:
    """Resolves every setting of `schema` and builds it: every value and every rule between
    values is checked here, before the process opens anything. Raises ConfigError."""
    declared = _declared(schema)
    settings = tuple(d.setting for d in declared)
    resolved = load(settings, config_file=config_file, env=env, overrides=overrides)
    keys = {d.path: d.setting.key for d in declared}
    config = _build(schema, "", resolved, keys)
    return Loaded(config, settings, resolved)


def _build(cls: type[C], prefix: str, resolved: Resolved, keys: Mapping[str, str]) -> C:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(typing.cast(Any, cls)):
        if _SECTION in f.metadata:
            kwargs[f.name] = _build(hints[f.name], f"{prefix}{f.name}.", resolved, keys)
        elif _SETTING in f.metadata:
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
        f"{key} = {_show(resolved.values[key])} (from {resolved.sources[key]})"
        for key in dict.fromkeys(names.values())
        if key in resolved.values
    ]
    return ConfigError(f"config error: {violation.render(names)}; got " + ", ".join(involved))


# -- documentation -------------------------------------------------------------------------


def reference_table(settings: Iterable[Setting]) -> str:
    """Markdown table of settings, for the README's configuration reference."""
    rows = [
        "| key | env | default | unit | allowed | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in settings:
        default = "" if s.default is None else f"`{_show(s.default)}`"
        rows.append(
            f"| `{s.key}` | `{s.env_var}` | {default} | {s.unit} | {s.allowed()} | {s.doc} |"
        )
    return "\n".join(rows)


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
