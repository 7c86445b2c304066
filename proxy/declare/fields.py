"""Declarative policy fields: one declaration per field drives validation, defaults and the JSON Schema.

A fault module lists its ``FIELDS`` table; a policy object declares each field on its frozen dataclass with
``spec(...)`` (or ``section(...)`` for a nested object), and ``fields_of`` derives the same table from it.
``read_fields`` checks a raw YAML mapping against a table, ``read_object`` builds a declared object from
one, and ``fields_schema`` describes a table to editors, so the three can never disagree.

Why not pydantic or msgspec (measured, Python 3.13, this machine): pydantic 2.14 takes ~100 ms to import
and declare two models (the whole policy load takes ~12 ms) and installs 9.5 MB, and its messages differ
from the ones users and tests know; msgspec stops at the first problem, where a policy error lists all.
"""

from __future__ import annotations

import copy
import dataclasses
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .errors import Errors
from .units import parse_duration, parse_percent, parse_size

# Error messages quote the bad value, shortened: a policy may hold a huge one.
_reprer = reprlib.Repr()
_reprer.maxstring = _reprer.maxother = 60
_reprer.maxlist = _reprer.maxdict = 5
_repr = _reprer.repr

__all__ = [
    "REQUIRED", "Field", "build", "fields_of", "fields_schema", "read_fields", "read_object", "section", "spec",
]

T = TypeVar("T")

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
    # Turns the checked value into the model's (a glob into a regex, a share into buckets); a ValueError
    # is a problem at the field's path. Defaults are given already turned.
    parse: Callable[[Any], Any] | None = None
    exclusive_minimum: float | None = None
    # Where a declared object keeps the value: its dataclass attribute ("" for a fault's table).
    attr: str = ""
    # A nested object: the mapping is read as this declared class, whose schema is "$defs/<ref>".
    section: type | None = None
    ref: str = ""
    # Several sections filling one tuple attribute, in order (the kill switch's guards).
    many: bool = False


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
        if field.exclusive_minimum is not None and out <= field.exclusive_minimum:
            raise ValueError(f"must be > {field.exclusive_minimum:g}, got {_repr(value)}")
        if field.maximum is not None and out > field.maximum:
            raise ValueError(f"must be <= {field.maximum:g}, got {_repr(value)}")
    return out if field.parse is None else field.parse(out)


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
        if f.default is not REQUIRED and f.parse is None and isinstance(f.default, str | int | float | bool):
            prop["default"] = f.default
        props[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = [f.name for f in fields if f.default is REQUIRED]
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema


# --- Fields declared on the frozen dataclass they fill --------------------------------------------------

_FIELD = "mlchaos.field"
_UNITS = ("duration", "percent", "size")


def spec(
    kind: Kind, default: Any = REQUIRED, *, help: str = "", key: str = "", minimum: float | None = None,
    maximum: float | None = None, exclusive_minimum: float | None = None, choices: tuple[str, ...] = (),
    schema: Mapping[str, Any] | None = None, parse: Callable[[Any], Any] | None = None,
    model_default: Any = REQUIRED,
) -> Any:
    """One policy field, declared on the frozen dataclass that holds it: ``timeout: float = spec("duration",
    2.0, help=...)``. ``key`` is the YAML name when it differs from the attribute; ``parse`` turns the
    checked value (and the default) into the model's; ``model_default`` is the attribute's default when the
    YAML one means "derive it" (None for a control share that follows the chaos one)."""
    shown = default
    if parse is not None and default is not REQUIRED and default is not None:
        default = parse(default)
    if kind in _UNITS and (minimum is not None or maximum is not None or exclusive_minimum is not None):
        # The generic unit schema bounds nothing; these bounds belong on its number branch.
        schema = copy.deepcopy(_SCHEMA_TYPES[kind]) if schema is None else schema
        number = schema["oneOf"][0]
        if exclusive_minimum is not None:
            del number["minimum"]
            number["exclusiveMinimum"] = exclusive_minimum
        if minimum is not None:
            number["minimum"] = minimum
        if maximum is not None:
            number["maximum"] = maximum
    if parse is not None and isinstance(shown, str | int | float):
        # The schema shows the default as written in YAML, not as parsed.
        schema = {**(schema or _SCHEMA_TYPES[kind]), "default": shown}
    field = Field(key, kind, default, help, minimum, maximum, choices, schema, parse, exclusive_minimum)
    model = default if model_default is REQUIRED else model_default
    if model is REQUIRED:
        return dataclasses.field(metadata={_FIELD: field})
    if isinstance(model, list | dict | set):
        return dataclasses.field(default_factory=lambda: copy.copy(model), metadata={_FIELD: field})
    return dataclasses.field(default=model, metadata={_FIELD: field})


def section(cls: type, *, help: str = "", key: str = "", ref: str = "", default: Any = REQUIRED) -> Any:
    """A nested object (a mapping in YAML) of a declared class; absent, it is the class's defaults (or
    ``default``). Its schema is ``$defs/<ref>``, the YAML key unless ``ref`` says otherwise."""
    field = Field(key, "mapping", None, help, section=cls, ref=ref)
    if default is not REQUIRED:
        return dataclasses.field(default=default, metadata={_FIELD: field})
    return dataclasses.field(default_factory=cls, metadata={_FIELD: field})


_CACHE: dict[type, tuple[Field, ...]] = {}


def fields_of(cls: type) -> tuple[Field, ...]:
    """The field table of a declared class, in declaration order; attributes without ``spec`` are not
    policy fields. A class may add fields it cannot declare statically with ``_extra_fields()``."""
    cached = _CACHE.get(cls)
    if cached is not None:
        return cached
    out: list[Field] = []
    for attr in dataclasses.fields(cls):
        field = attr.metadata.get(_FIELD)
        if field is not None:
            name = field.name or attr.name
            ref = field.ref or name
            schema = {"$ref": f"#/$defs/{ref}"} if field.section is not None else field.schema
            out.append(dataclasses.replace(field, name=name, attr=attr.name, ref=ref, schema=schema))
    extra: Callable[[], list[Field]] | None = getattr(cls, "_extra_fields", None)
    for field in extra() if extra is not None else ():
        out.append(dataclasses.replace(field, schema={"$ref": f"#/$defs/{field.ref}"}))
    _CACHE[cls] = table = tuple(out)
    return table


def read_object(cls: type, raw: object, path: str, errors: Errors) -> dict[str, Any]:
    """Attribute values of a declared class from its YAML mapping, nested sections built; an absent
    mapping is all defaults, a wrong value is reported and left out (so the attribute keeps its default)."""
    fields = fields_of(cls)
    values = read_fields(fields, {} if raw is None else raw, path, errors)
    if values is None:
        return {}
    out: dict[str, Any] = {}
    for field in fields:
        if field.section is not None:
            value: Any = build(field.section, values.get(field.name), _join(path, field.name), errors)
            out[field.attr] = (*out.get(field.attr, ()), value) if field.many else value
        elif field.name in values:
            out[field.attr] = values[field.name]
    return out


def build(cls: type[T], raw: object, path: str, errors: Errors) -> T:
    """A declared object whose fields all have defaults, from its YAML mapping (problems go to ``errors``)."""
    return cls(**read_object(cls, raw, path, errors))
