"""A small typed schema for TOML tables, with errors that name file and key.

Why not a library: what administrators need is one line that says which key
of which file is wrong and how (``etc/smsd.toml: gateway.modem1.latency:
expected a duration like "2s", got "fast"``). cattrs and pydantic report
errors as nested exception groups or multi-line dumps, and both would still
need the same per-key checks for endpoints, regular expressions, networks
and durations. Sections are attrs classes; each field's annotation says its
type and its metadata carries the doc string and an optional check.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs


class ConfigError(Exception):
    """One line: ``file: key: problem``."""


class Duration(float):
    """Seconds, written in TOML as a number or a string like "5d", "4h", "30s", "250ms"."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> Duration:
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "30s" or "5d", got {value!r}')
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f'expected a duration >= 0 like "30s", got {value!r}')
        return Duration(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return Duration(float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f'expected a duration like "30s", "4h" or "5d", got {value!r}')


def setting(
    default: Any = attrs.NOTHING,
    doc: str = "",
    check: Callable[[Any], Any] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """An attrs field with the doc string and check the schema walker uses."""
    metadata = {"doc": doc, "check": check}
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def between(lo: float, hi: float) -> Any:
    """A check for a setting: a number from ``lo`` to ``hi``."""

    def check(value: float) -> None:
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}, got {value!r}")

    return check


def one_of(*choices: str) -> Any:
    """A check for a setting: one of these words."""

    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")

    return check


def _plural(tp: Any) -> str:
    names = {str: "strings", int: "integers", float: "numbers", bool: "true/false values"}
    return names.get(tp, "tables" if attrs.has(tp) else _type_name(tp))


def key_name(key: str) -> str:
    """A key as it may be shown on one line: bare when it is a plain word, else quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)


def _type_name(tp: Any) -> str:
    if tp is Duration:
        return 'a duration like "30s" or "5d"'
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_plural(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if attrs.has(tp):
        return "a table"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; raises ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        last: ConfigError | None = None
        for arg in args:
            try:
                return convert(arg, value, key)
            except ConfigError as e:
                last = e
        assert last is not None
        raise last
    if tp is Duration:
        try:
            return parse_duration(value)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        _, item = typing.get_args(tp)
        return {k: convert(item, v, f"{key}.{k}") for k, v in value.items()}
    if attrs.has(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return build(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Any:
        return value
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def build(
    cls: type,
    table: dict[str, Any],
    prefix: str,
    *,
    extra: bool = False,
    also: tuple[str, ...] = (),
) -> Any:
    """Make ``cls`` from a TOML table; unknown keys are errors unless ``extra``.

    With ``extra`` the unknown keys are returned beside the object, for
    sections whose remaining keys belong to a plug-in (gateway types);
    ``also`` are keys known elsewhere in the same table, listed in errors.
    """
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in attrs.fields(cls)}
    unknown = {k: v for k, v in table.items() if k not in known}
    if unknown and not extra:
        key = next(iter(unknown))
        raise ConfigError(
            f"{_join(prefix, key_name(key))}: unknown key"
            f" (known here: {', '.join(sorted({*known, *also}))})"
        )
    values = {}
    for name, field in known.items():
        key = _join(prefix, name)
        if name not in table:
            if field.default is attrs.NOTHING:
                raise ConfigError(f"{key}: missing (required)")
            continue
        value = convert(hints[name], table[name], key)
        check = field.metadata.get("check")
        if check is not None:
            try:
                checked = check(value)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
            if checked is not None:
                value = checked
        values[name] = value
    obj = cls(**values)
    return (obj, unknown) if extra else obj


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def document(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, doc) of every field, for tests that keep etc/smsd.toml honest."""
    out = []
    for f in attrs.fields(cls):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        out.append((f.name, default, f.metadata.get("doc", "")))
    return out
