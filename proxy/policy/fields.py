"""Declarative policy fields: one table per object drives validation, defaults and the JSON Schema.

A fault module or the loader lists its fields once; ``read_fields`` checks a raw YAML mapping against
them and ``fields_schema`` describes them to editors, so the two can never disagree.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import Errors
from .units import parse_duration, parse_percent, parse_size

# Error messages quote the bad value, shortened: a policy may hold a huge one.
_reprer = reprlib.Repr()
_reprer.maxstring = _reprer.maxother = 60
_reprer.maxlist = _reprer.maxdict = 5
_repr = _reprer.repr

__all__ = ["REQUIRED", "Field", "fields_schema", "read_fields"]

Kind = Literal[
    "number", "integer", "bool", "string", "duration", "percent", "size", "probability", "choice",
    "string_list", "number_list", "mapping", "any",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    default: Any = REQUIRED
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    # For "mapping"/"any": the JSON Schema of the value, since the reader cannot derive it.
    schema: Mapping[str, Any] | None = None


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_repr(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite number, got {_repr(value)}")
    return float(value)


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_repr(value)}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_repr(value)}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {_repr(value)}")
    return value


def _probability(value: object) -> float:
    p = _number(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError("must be between 0 and 1")
    return p


def _string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of strings, got {_repr(value)}")
    return tuple(value)


def _number_list(value: object) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of numbers, got {_repr(value)}")
    return tuple(_number(v) for v in value)


def _mapping(value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {_repr(value)}")
    return value


_CONVERTERS: dict[str, Callable[[object], Any]] = {
    "number": _number, "integer": _integer, "bool": _bool, "string": _string,
    "duration": parse_duration, "percent": parse_percent, "size": parse_size,
    "probability": _probability, "string_list": _string_list, "number_list": _number_list,
    "mapping": _mapping, "any": lambda v: v,
}


def _convert(field: Field, value: object) -> Any:
    if field.kind == "choice":
        if value not in field.choices:
            raise ValueError(f"must be one of {', '.join(field.choices)}; got {_repr(value)}")
        return value
    out = _CONVERTERS[field.kind](value)
    if isinstance(out, int | float) and not isinstance(out, bool):
        if field.minimum is not None and out < field.minimum:
            raise ValueError(f"must be >= {field.minimum:g}, got {_repr(value)}")
        if field.maximum is not None and out > field.maximum:
            raise ValueError(f"must be <= {field.maximum:g}, got {_repr(value)}")
    return out


def read_fields(
    fields: Sequence[Field], raw: object, path: str, errors: Errors, *, ignore: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """Values by field name, defaults filled in; problems go to ``errors`` and leave the field out.

    ``None`` when ``raw`` is not a mapping at all. Keys in ``ignore`` are left for the caller.
    """
    if not isinstance(raw, dict):
        errors.add(path, f"expected a mapping, got {type(raw).__name__}")
        return None
    known = {f.name: f for f in fields}
    for key in raw:
        if key not in known and key not in ignore:
            errors.add(_join(path, str(key)), f"unknown field (expected one of: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    for field in fields:
        if field.name not in raw or raw[field.name] is None:
            if field.default is REQUIRED:
                errors.add(_join(path, field.name), "required")
            else:
                out[field.name] = field.default
            continue
        try:
            out[field.name] = _convert(field, raw[field.name])
        except ValueError as exc:
            errors.add(_join(path, field.name), str(exc))
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_SCHEMA_TYPES: dict[str, dict[str, Any]] = {
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "bool": {"type": "boolean"},
    "string": {"type": "string", "minLength": 1},
    "duration": {"oneOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*[0-9.]+\s*(us|µs|ms|s|m|h|d)?\s*$"},
    ]},
    "percent": {"oneOf": [
        {"type": "number", "minimum": 0, "maximum": 100},
        {"type": "string", "pattern": r"^\s*[0-9.]+\s*%?\s*$"},
    ]},
    "size": {"oneOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"(?i)^\s*[0-9.]+\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$"},
    ]},
    "probability": {"type": "number", "minimum": 0, "maximum": 1},
    "string_list": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "number_list": {"type": "array", "items": {"type": "number"}},
    "mapping": {"type": "object"},
    "any": {},
}


def fields_schema(fields: Sequence[Field], **extra: Any) -> dict[str, Any]:
    """The JSON Schema object for a field table (draft 2020-12)."""
    props: dict[str, Any] = {}
    for f in fields:
        if f.schema is not None:
            prop = dict(f.schema)
        elif f.kind == "choice":
            prop = {"enum": list(f.choices)}
        else:
            prop = dict(_SCHEMA_TYPES[f.kind])
        if f.minimum is not None and f.kind in ("number", "integer"):
            prop["minimum"] = f.minimum
        if f.maximum is not None and f.kind in ("number", "integer"):
            prop["maximum"] = f.maximum
        if f.help:
            prop["description"] = f.help
        if f.default is not REQUIRED and isinstance(f.default, str | int | float | bool):
            prop["default"] = f.default
        props[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = [f.name for f in fields if f.default is REQUIRED]
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema
