"""Field tables: one declaration gives validation, defaults and a JSON Schema that agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.declare.errors import Errors, PolicyError
from proxy.declare.fields import REQUIRED, Field, build, fields_of, fields_schema, read_fields, section, spec

TABLE: tuple[Field, ...] = (
    Field("name", "string", help="A name."),
    Field("count", "integer", default=3, minimum=1, maximum=10),
    Field("ratio", "number", default=0.5, minimum=0),
    Field("on", "bool", default=False),
    Field("wait", "duration", default=1.0),
    Field("share", "percent", default=None),
    Field("size", "size", default=1024),
    Field("p", "probability", default=1.0),
    Field("mode", "choice", default="close", choices=("close", "reset")),
    Field("tags", "string_list", default=None),
    Field("weights", "number_list", default=None),
    Field("extra", "mapping", default=None, schema={"type": "object", "additionalProperties": {"type": "string"}}),
    Field("anything", "any", default=None),
)


def read(raw: object, table: tuple[Field, ...] = TABLE) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    errors = Errors()
    values = read_fields(table, raw, "thing", errors)
    return values, errors.problems


def test_defaults_fill_in() -> None:
    values, found = read({"name": "x"})
    assert found == []
    assert values == {
        "name": "x", "count": 3, "ratio": 0.5, "on": False, "wait": 1.0, "share": None, "size": 1024, "p": 1.0,
        "mode": "close", "tags": None, "weights": None, "extra": None, "anything": None,
    }


def test_values_are_converted() -> None:
    values, found = read({
        "name": "x", "count": 10, "ratio": 2, "on": True, "wait": "250ms", "share": "2.5%", "size": "2KiB",
        "p": 0, "mode": "reset", "tags": "one", "weights": [1, 2.5], "extra": {"a": "b"}, "anything": [1],
    })
    assert found == []
    assert values is not None
    assert (values["ratio"], values["wait"], values["share"], values["size"]) == (2.0, 0.25, 2.5, 2048)
    assert (values["tags"], values["weights"], values["anything"]) == (("one",), (1.0, 2.5), [1])


def test_null_means_default_and_missing_required_is_reported() -> None:
    values, found = read({"name": None, "count": None})
    assert found == [("thing.name", "required")]
    assert values is not None and values["count"] == 3 and "name" not in values


def test_unknown_keys_list_the_known_ones() -> None:
    _, found = read({"name": "x", "colour": 1, 2: 3})
    known = ", ".join(sorted(f.name for f in TABLE))
    assert found == [("thing.colour", f"unknown field (expected one of: {known})"),
                     ("thing.2", f"unknown field (expected one of: {known})")]


def test_ignored_keys_are_left_to_the_caller() -> None:
    errors = Errors()
    assert read_fields(TABLE, {"name": "x", "type": "t"}, "", errors, ignore=frozenset({"type"})) is not None
    assert not errors


def test_top_level_paths_have_no_leading_dot() -> None:
    errors = Errors()
    read_fields(TABLE, {}, "", errors)
    assert errors.problems == [("name", "required")]


@pytest.mark.parametrize("raw", [None, [], "x", 3])
def test_non_mapping_is_reported_once(raw: object) -> None:
    values, found = read(raw)
    assert values is None
    assert found == [("thing", f"expected a mapping, got {type(raw).__name__}")]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("count", 0, "must be >= 1"),
        ("count", 11, "must be <= 10"),
        ("count", 2.0, "expected an integer"),
        ("count", True, "expected an integer"),
        ("ratio", -1, "must be >= 0"),
        ("ratio", "1", "expected a number"),
        ("ratio", float("nan"), "expected a finite number"),
        ("ratio", float("inf"), "expected a finite number"),
        ("on", "true", "expected true or false"),
        ("on", 0, "expected true or false"),
        ("name", "", "expected a non-empty string"),
        ("name", 5, "expected a non-empty string"),
        ("wait", "soon", "expected a duration"),
        ("share", 120, "between 0 and 100"),
        ("size", "big", "expected a size"),
        ("p", 1.01, "must be between 0 and 1"),
        ("p", True, "expected a number"),
        ("mode", "explode", "must be one of close, reset"),
        ("tags", [1], "expected a list of strings"),
        ("tags", ["a", ""], "expected a list of strings"),
        ("weights", ["x"], "expected a number"),
        ("weights", 1, "expected a list of numbers"),
        ("extra", [], "expected a mapping"),
    ],
)
def test_bad_values_name_their_field(key: str, value: object, message: str) -> None:
    values, found = read({"name": "x", key: value} if key != "name" else {key: value})
    assert [(p, m) for p, m in found if message in m] == [(f"thing.{key}", found[0][1])], found
    assert values is not None and key not in values


def test_every_problem_in_one_pass() -> None:
    _, found = read({"count": 0, "on": 1, "mode": "x", "zzz": 1})
    assert [p for p, _ in found] == ["thing.zzz", "thing.name", "thing.count", "thing.on", "thing.mode"]


def test_errors_collect_and_raise_together() -> None:
    errors = Errors()
    errors.raise_if_any()
    errors.add("a", "one")
    errors.add("", "two")
    with pytest.raises(PolicyError) as info:
        errors.raise_if_any()
    assert info.value.problems == [("a", "one"), ("", "two")]
    assert info.value.lines() == ["a: one", "two"]
    assert str(info.value) == "a: one; two"
    assert isinstance(info.value, ValueError)


def test_schema_of_a_table() -> None:
    schema = fields_schema(TABLE, title="thing")
    assert schema["type"] == "object" and schema["additionalProperties"] is False and schema["title"] == "thing"
    assert schema["required"] == ["name"]
    props = schema["properties"]
    assert list(props) == [f.name for f in TABLE]
    assert props["name"] == {"type": "string", "minLength": 1, "description": "A name."}
    assert props["count"] == {"type": "integer", "minimum": 1, "maximum": 10, "default": 3}
    assert props["mode"] == {"enum": ["close", "reset"], "default": "close"}
    assert props["extra"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert "default" not in props["share"]  # None is not a value a policy could write
    assert REQUIRED is not None and repr(REQUIRED) == "REQUIRED"


def test_schema_without_required_fields_has_no_required_list() -> None:
    assert "required" not in fields_schema((Field("a", "bool", default=True),))


# --- Agreement: what read_fields accepts, the schema accepts --------------------------------------------

# Text from the characters unit values are written with; see the xfail below for what lies beyond.
unit_text = st.text(alphabet="0123456789.% kmgibusdhKMGIB", max_size=8)
values = (st.none() | st.booleans() | st.integers() | st.floats() | unit_text
          | st.lists(st.integers(0, 5) | unit_text, max_size=3))


@pytest.mark.parametrize("field", [f for f in TABLE if f.kind not in ("mapping", "any")], ids=lambda f: f.kind)
@given(value=values)
def test_accepted_values_satisfy_the_schema(jsonschema: Any, field: Field, value: object) -> None:
    table = (Field("name", "string", default="x"), field)
    _, found = read({field.name: value}, table)
    if not found and value is not None:
        jsonschema.validate({field.name: value}, fields_schema(table))


@pytest.mark.parametrize("text", ["1e1", "+5", "5_0%", "inf", "nan%", "2 %%"])
def test_percent_text_beyond_the_schema_grammar_is_refused_by_both(jsonschema: Any, text: str) -> None:
    table = (Field("share", "percent"),)
    _, found = read({"share": text}, table)
    assert [p for p, _ in found] == ["thing.share"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"share": text}, fields_schema(table))


# --- Fields declared on a dataclass -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Inner:
    depth: int = spec("integer", 2, minimum=1, help="How deep.")


@dataclass(frozen=True, slots=True)
class Outer:
    wait: float = spec("duration", 1.0, exclusive_minimum=0, help="How long.")
    share_buckets: int = spec("percent", 5, key="share", maximum=50, parse=lambda p: round(p * 100))
    inner: Inner = section(Inner, help="Nested.")
    note: str = "not a policy field"


def test_a_declaration_gives_the_table_the_object_and_the_defaults() -> None:
    table = fields_of(Outer)
    assert [(f.name, f.attr, f.kind) for f in table] == [
        ("wait", "wait", "duration"), ("share", "share_buckets", "percent"), ("inner", "inner", "mapping")]
    assert table[2].section is Inner and table[2].schema == {"$ref": "#/$defs/inner"}
    errors = Errors()
    assert build(Outer, None, "o", errors) == Outer() == Outer(1.0, 500, Inner(2))
    assert build(Outer, {"wait": "2s", "share": "2.5%", "inner": {"depth": 7}}, "o", errors) == Outer(
        2.0, 250, Inner(7))
    assert errors.problems == []


def test_a_declared_object_reports_every_problem_with_its_path_and_keeps_defaults() -> None:
    errors = Errors()
    out = build(Outer, {"wait": "0ms", "share": 60, "inner": {"depth": 0, "x": 1}, "y": 2}, "o", errors)
    assert out == Outer()
    assert errors.problems == [
        ("o.y", "unknown field (expected one of: inner, share, wait)"),
        ("o.wait", "must be > 0, got '0ms'"),
        ("o.share", "must be <= 50, got 60"),
        ("o.inner.x", "unknown field (expected one of: depth)"),
        ("o.inner.depth", "must be >= 1, got 0"),
    ]


def test_a_declared_unit_field_carries_its_bounds_and_written_default_into_the_schema() -> None:
    props = fields_schema(fields_of(Outer))["properties"]
    assert props["wait"]["oneOf"][0] == {"type": "number", "exclusiveMinimum": 0}
    assert props["wait"]["default"] == 1.0 and props["wait"]["description"] == "How long."
    # The default as written in YAML (percent), not as parsed (buckets).
    assert props["share"]["oneOf"][0]["maximum"] == 50 and props["share"]["default"] == 5
