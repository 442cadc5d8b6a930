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
# float32's smallest normal number: a nonzero value below it becomes a subnormal or 0 in the
# tensors it goes into (a clip value of 1e-50 zeroed every gradient, silently).
FLOAT32_TINY = 1.1754943508222875e-38
FLOAT32_TEXT = (
    f"finite, 0 or between {FLOAT32_TINY:.3g} and {FLOAT32_MAX:.3g} in magnitude: float32"
)


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
    high_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    search: Search | None = None,
    help: str = "",
    cli: bool = True,
    member: bool = False,
) -> Any:
    """A dataclass field with validation metadata (`low_open`, `high_open`: that bound is
    excluded, e.g. Adam's betas, which torch refuses at 1;
    `cli=False`: set by data or methods, not a command-line flag; `member=True`: members of
    one population may differ in it)."""
    meta = {"low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": choices}  # fmt: skip
    meta |= {"search": search, "help": help, "cli": cli, "member": member}
    if isinstance(default, list | dict | set):
        raise TypeError("use tuples for defaults of frozen configs")
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def allowed_text(f: dataclasses.Field) -> str:
    """Human text for what a field accepts, e.g. '> 0', '[1, 100]', '[0, 1)', 'one of: a, b'."""
    m = f.metadata
    if m.get("choices"):
        return "one of: " + ", ".join(str(c) for c in m["choices"])
    lo, hi = m.get("low"), m.get("high")
    lo_open, hi_open = m.get("low_open", False), m.get("high_open", False)
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return ""


def validate(obj: Any, owner: str) -> None:
    """Check every field of a config dataclass against its declared range or choices."""
    types_ = field_types(type(obj))
    for f in dataclasses.fields(obj):
        check_value(f, types_[f.name], getattr(obj, f.name), owner)


def check_field(cls: type, name: str, value: Any, owner: str) -> Any:
    """`value` checked against the declaration of field `name` of `cls` (for values that are
    checked before their dataclass is built, e.g. a run's seed); returns it."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    check_value(f, field_types(cls)[name], value, owner)
    return value


def check_value(f: dataclasses.Field, tp: Any, value: Any, owner: str) -> None:
    """One value against its field's declared type, range and choices; float values must also
    survive float32, the tensors they go into. A one-line ConfigError otherwise."""
    if _allowed(f.metadata, tp, value):
        return
    allowed = allowed_text(f) or _type_name(tp)
    if _is_number(value) and tp is float:
        allowed += f" ({FLOAT32_TEXT})"
    raise ConfigError(f"{owner}: {f.name}={value!r} is not allowed; allowed: {allowed}")


def _allowed(m: Any, tp: Any, value: Any) -> bool:
    if not isinstance(value, _runtime_type(tp)) or (tp is int and isinstance(value, bool)):
        return False
    if tp is float and not float32_ok(value):
        return False  # NaN, inf, or a value float32 rounds to inf or to (almost) 0
    if m.get("choices") is not None:
        items = value if isinstance(value, tuple) else (value,)
        return all(v in m["choices"] for v in items)
    lo, hi = m.get("low"), m.get("high")
    if lo is not None and not (value > lo if m.get("low_open") else value >= lo):
        return False
    return hi is None or (value < hi if m.get("high_open") else value <= hi)


def float32_ok(value: float) -> bool:
    """Finite, and 0 or a normal float32 number: what reaches a tensor is what was asked."""
    try:
        magnitude = abs(float(value))
    except OverflowError:  # an int beyond any float
        return False
    return magnitude == 0 or FLOAT32_TINY <= magnitude <= FLOAT32_MAX


def check_float32(value: float, name: str, owner: str = "train") -> float:
    """A value derived from others (e.g. a learning rate times its multiplier), checked where
    it is derived: each factor may be fine while the product is not a float32."""
    if not float32_ok(value):
        raise ConfigError(f"{owner}: {name}={value!r} is not allowed; allowed: {FLOAT32_TEXT}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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


def member_fields(cls: type) -> tuple[str, ...]:
    """The fields of `cls` declared `member=True`: a population's members may differ in them."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("member"))


def cli_fields(cls: type) -> tuple[str, ...]:
    """The fields of `cls` a user sets (flags, suite tables, axes); data and methods set the
    rest."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True))
