"""Declarative parameters for frozen config dataclasses: range, choices, search space, parsing.

Every config (methods, training, models) declares its fields with `param(...)`, so validation,
the CLI's `--set key=value` parsing, `list` output and the Optuna search space all come from one
place.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError

ROLES = ("generator", "discriminator")
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Search:
    """An Optuna search range for one parameter (`log` for log-uniform)."""

    low: float
    high: float
    log: bool = True


def param(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    search: Search | None = None,
    help: str = "",
    cli: bool = True,
) -> Any:
    """A dataclass field with validation metadata (`low_open`: the lower bound is excluded;
    `cli=False`: set by data or methods, not a command-line flag)."""
    meta = {"low": low, "high": high, "low_open": low_open, "choices": choices}
    meta |= {"search": search, "help": help, "cli": cli}
    if isinstance(default, list | dict | set):
        raise TypeError("use tuples for defaults of frozen configs")
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def allowed_text(f: dataclasses.Field) -> str:
    """Human text for what a field accepts, e.g. '> 0', '[1, 100]', 'one of: a, b'."""
    m = f.metadata
    if m.get("choices"):
        return "one of: " + ", ".join(str(c) for c in m["choices"])
    lo, hi = m.get("low"), m.get("high")
    if lo is not None and hi is not None:
        return f"{'(' if m['low_open'] else '['}{lo}, {hi}]"
    if lo is not None:
        return f"{'>' if m['low_open'] else '>='} {lo}"
    if hi is not None:
        return f"<= {hi}"
    return ""


def validate(obj: Any, owner: str) -> None:
    """Check every field of a config dataclass against its declared range or choices."""
    types_ = field_types(type(obj))
    for f in dataclasses.fields(obj):
        value, m = getattr(obj, f.name), f.metadata
        ok = isinstance(value, _runtime_type(types_[f.name]))
        if ok and isinstance(value, float) and not abs(value) <= FLOAT32_MAX:
            ok = False  # NaN, inf, or a value that overflows the float32 tensors it goes into
        if ok and m.get("choices") is not None:
            items = value if isinstance(value, tuple) else (value,)
            ok = all(v in m["choices"] for v in items)
        if ok and m.get("low") is not None:
            ok = value > m["low"] if m["low_open"] else value >= m["low"]
        if ok and m.get("high") is not None:
            ok = value <= m["high"]
        if not ok:
            allowed = allowed_text(f) or _type_name(types_[f.name])
            if isinstance(value, float):
                allowed += f" (finite, at most {FLOAT32_MAX:.3g} in magnitude: float32)"
            raise ConfigError(f"{owner}: {f.name}={value!r} is not allowed; allowed: {allowed}")


def parse_value(cls: type, name: str, text: str, owner: str) -> Any:
    """Parse a CLI string into the type of field `name` of `cls`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        known = ", ".join(fields)
        raise ConfigError(f"{owner}: unknown parameter {name!r}; known parameters: {known}")
    tp = field_types(cls)[name]
    try:
        return _parse(tp, text)
    except ValueError:
        raise ConfigError(f"{owner}: {name}={text!r} is not a valid {_type_name(tp)}") from None


def to_text(value: Any) -> str:
    """Inverse of `parse_value` (used for MLflow params and the config round-trip)."""
    if isinstance(value, tuple):
        return ",".join(to_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def from_texts(cls: type, texts: dict[str, str], owner: str) -> Any:
    """Build and validate `cls` from {field: string}; missing fields take their defaults."""
    values = {k: parse_value(cls, k, v, owner) for k, v in texts.items()}
    return cls(**values)


def typed_values(cls: type, values: dict[str, Any], owner: str) -> dict[str, Any]:
    """{field: value} for `cls` from typed values or texts: a text is parsed unless the field is
    a string; lists become tuples and integers given for a float field become floats (so 1 and
    1.0 are the same config). Unknown names are a one-line ConfigError."""
    types_ = field_types(cls)
    out = {}
    for name, value in values.items():
        if name not in types_:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{owner}: unknown parameter {name!r}; known parameters: {known}")
        tp = types_[name]
        if isinstance(value, str) and tp is not str:
            value = parse_value(cls, name, value, owner)
        elif isinstance(value, list):
            value = tuple(value)
        elif tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


def typed_config(cls: type, values: dict[str, Any], owner: str) -> Any:
    """Build and validate `cls` from typed values or texts; missing fields take defaults."""
    return cls(**typed_values(cls, values, owner))


def _parse(tp: Any, text: str) -> Any:
    text = text.strip()
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        return tuple(_parse(inner, t) for t in text.split(",") if t.strip())
    raise ValueError(text)


def _runtime_type(tp: Any) -> type | tuple[type, ...]:
    if tp is float:
        return (float, int)
    if typing.get_origin(tp) is tuple:
        return tuple
    if isinstance(tp, types.UnionType):
        return typing.get_args(tp)
    return tp


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"comma-separated list of {_type_name(typing.get_args(tp)[0])}"
    return {bool: "boolean (true/false)", int: "integer", float: "number", str: "string"}.get(
        tp, str(tp)
    )
