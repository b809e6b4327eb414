"""Declaring settings: each one once, on a dataclass field, with its type, default, unit,
bounds and doc string.

A process's configuration is a tree of frozen dataclasses. `setting(...)` makes a field a
setting: its key (file key; env var `HARAG_<KEY>`), doc string, unit and bounds live in the
field's metadata and its type comes from the annotation (bool, int, float, str or a
Literal of strings). `section(Cls)` nests a group. From that one declaration come the
coercion and range check of raw values (`Setting.coerce`), the dataclass's own validation
when it is built in code (`check_fields`) and the README's reference (`reference_table`).

Rules that tie several fields together are written once, in the dataclass's
`__post_init__`, as a `RuleViolation` whose text names the fields as `{placeholders}`;
servicekit.config's loader turns it into one line naming each setting, value and source.
"""

from __future__ import annotations

import dataclasses
import math
import string
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ENV_PREFIX = "HARAG_"

SETTING_METADATA = "harag.setting"
SECTION_METADATA = "harag.section"

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
        """The rule with each `{field}` replaced by its name in `names` (e.g. setting keys)."""
        text = self.rule
        for f in self.fields:
            text = text.replace("{" + f + "}", names.get(f, f))
        return text


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
            if raw is None:  # an empty YAML value: say so rather than read it as "None"
                raise ValueError
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
    return dataclasses.field(default=default, metadata={SETTING_METADATA: spec})


def section(cls: type[Any]) -> Any:
    """A dataclass field holding a nested group of settings (built from its defaults)."""
    return dataclasses.field(default_factory=cls, metadata={SECTION_METADATA: True})


@dataclass(frozen=True)
class Declared:
    """A setting found on a configuration class, and where it sits in the tree."""

    path: str
    """Dotted field path from the root dataclass, e.g. "breaker.window_size"."""
    setting: Setting


_DECLARED_CACHE: dict[tuple[type[Any], str], tuple[Declared, ...]] = {}


def declared(cls: type[Any], prefix: str = "") -> tuple[Declared, ...]:
    """The settings of a dataclass and its sections (cached: a class's fields do not change)."""
    if (cls, prefix) not in _DECLARED_CACHE:
        _DECLARED_CACHE[cls, prefix] = _find_declared(cls, prefix)
    return _DECLARED_CACHE[cls, prefix]


def _find_declared(cls: type[Any], prefix: str) -> tuple[Declared, ...]:
    hints = typing.get_type_hints(cls)
    found: list[Declared] = []
    for f in dataclasses.fields(cls):
        if SECTION_METADATA in f.metadata:
            found += declared(hints[f.name], f"{prefix}{f.name}.")
        elif SETTING_METADATA in f.metadata:
            kind, choices = _kind_of(hints[f.name], cls, f.name)
            spec = dict(f.metadata[SETTING_METADATA])
            found.append(
                Declared(
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
    return [d.setting for d in declared(cls)]


@dataclass(frozen=True)
class SectionDoc:
    """One table of the configuration reference: a section's class and its own settings."""

    path: str
    """Field path of the section from the root ("" for the root's own settings)."""
    cls: type[Any]
    settings: tuple[Setting, ...]


def sections_of(cls: type[Any], prefix: str = "") -> list[SectionDoc]:
    """The root's own settings, then each section's (depth first), for documentation."""
    hints = typing.get_type_hints(cls)
    own = tuple(d.setting for d in declared(cls, prefix) if "." not in d.path[len(prefix) :])
    docs = [SectionDoc(prefix.rstrip("."), cls, own)] if own else []
    for f in dataclasses.fields(cls):
        if SECTION_METADATA in f.metadata:
            docs += sections_of(hints[f.name], f"{prefix}{f.name}.")
    return docs


def check_fields(instance: Any) -> None:
    """Validates each declared field of a dataclass instance against its own declaration.

    Call from `__post_init__`: a config built in code gets the same bounds as one loaded
    from the environment. Raises RuleViolation naming the first bad field.
    """
    for d in declared(type(instance)):
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


def show_value(value: Any) -> str:
    """A value as an operator writes it (true/false, '' for empty)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value != "" else "''"


def reference_table(settings: Iterable[Setting]) -> str:
    """Markdown table of settings, for the README's configuration reference."""
    rows = [
        "| key | env | default | unit | allowed | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in settings:
        default = "" if s.default is None else f"`{show_value(s.default)}`"
        rows.append(
            f"| `{s.key}` | `{s.env_var}` | {default} | {s.unit} | {s.allowed()} | {s.doc} |"
        )
    return "\n".join(rows)
