"""Faults on a CSV body without reading its whole table: structural ones (``CsvAdapter.restructure``) without
its values, and those that change cells of their features in place (``CsvAdapter.rewrite_values``) with only
those columns read. Exactly the bytes reading the table, the fault's mutation with the same draws and writing
would give, and the table's way for what might read differently."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.payload import mutate
from proxy.payload.adapters import get_adapter
from proxy.payload.adapters.base import AdapterOptions
from proxy.payload.table import FeatureTable
from tests.payload.test_tabular import feeds

CSV = get_adapter("csv")

STRUCTURAL = ("drop_feature", "rename_feature", "reorder_features", "truncate_batch", "reorder_rows",
              "duplicate_rows")


def _change(kind: str, features: tuple[str, ...] | None, fraction: float, seed: int,
            extra: dict[str, Any]) -> Any:
    fn = mutate.MUTATIONS[kind]
    rng = np.random.default_rng(seed)
    return functools.partial(lambda table: fn(table, rng=rng, features=features, fraction=fraction, **extra))


def _the_table_way(body: bytes, options: AdapterOptions, kind: str, features: tuple[str, ...] | None,
                   fraction: float, seed: int, extra: dict[str, Any]) -> tuple[bool, bytes | None]:
    parsed = CSV.read(body, options, direction="response")
    if parsed is None:
        return False, None
    m = _change(kind, features, fraction, seed, extra)(parsed.table)
    return True, (CSV.write(parsed, m.table, options) if m.applicable and m.changed else None)


def _extra(kind: str, data: Any, names: list[str]) -> dict[str, Any]:
    if kind == "truncate_batch":
        return {"where": data.draw(st.sampled_from(["random", "tail"])), "keep_min": data.draw(st.integers(0, 3))}
    if kind == "reorder_features":
        return {"mode": data.draw(st.sampled_from(["reverse", "shuffle"]))}
    if kind == "rename_feature" and data.draw(st.booleans()):
        # A new name that needs quoting, one that clashes, one unchanged.
        return {"mapping": {names[0]: "a,b" if len(names) > 1 else "x", names[-1]: names[0]}}
    return {}


def _check_against_the_table(case: tuple[bytes, bytes, bytes, int, list[list[bytes]]], kind: str, fraction: float,
                             seed: int, data: Any, way: str) -> None:
    """A feed, features and options drawn; ``CSV.<way>`` (restructure or rewrite_values) against the table's way:
    the same bytes, or for one column or nothing but white space, the table's way."""
    body, _, _, _, rows = case
    width = len(rows[0])
    names = [f"c{j}" for j in range(width)]
    features = data.draw(st.one_of(st.none(), st.lists(st.sampled_from([*names, "absent"]), min_size=1,
                                                          max_size=3).map(tuple)))
    options = AdapterOptions(feature_names=tuple(names) if data.draw(st.booleans()) else ())
    extra = (_extra if way == "restructure" else _value_extra)(kind, data, names)
    change = _change(kind, features, fraction, seed, extra)
    if way == "restructure":
        done, out = CSV.restructure(body, options, change)
    else:
        done, out = CSV.rewrite_values(body, options, features, change)
    if width == 1 or not body.strip():
        assert (done, out) == (False, None)  # one column (its empty lines are written '""'), or nothing
        return
    assert done  # quote-free and regular: always without reading the whole table
    assert (True, out) == _the_table_way(body, options, kind, features, fraction, seed, extra)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds(), st.sampled_from(STRUCTURAL), st.floats(0, 1), st.integers(0, 2**32 - 1), st.data())
def test_a_structural_fault_without_the_values_is_the_table_s_result(
        case: tuple[bytes, bytes, bytes, int, list[list[bytes]]], kind: str, fraction: float, seed: int,
        data: Any) -> None:
    _check_against_the_table(case, kind, fraction, seed, data, "restructure")


@pytest.mark.parametrize(("kind", "extra", "want"), [
    ("drop_feature", {"features": ("b",)}, b"\xef\xbb\xbfa;c\r\n1;3\r\n4;\r\n7;9"),
    ("drop_feature", {"features": ("a", "b", "c")}, b'\xef\xbb\xbf\r\n""\r\n""\r\n""'),
    ("drop_feature", {"features": ("a", "c")}, b'\xef\xbb\xbfb\r\n2\r\n""\r\n8'),
    ("rename_feature", {"features": ("b",)}, b"\xef\xbb\xbfa;b_renamed;c\r\n1;2;3\r\n4;;\r\n7;8;9"),
    ("reorder_features", {"features": ("a", "c")}, b"\xef\xbb\xbfc;b;a\r\n3;2;1\r\n;;4\r\n9;8;7"),
    ("truncate_batch", {"where": "tail", "fraction": 0.5}, b"\xef\xbb\xbfa;b;c\r\n1;2;3\r\n4;;"),
])
def test_structural_faults_on_a_small_feed(kind: str, extra: dict[str, Any], want: bytes) -> None:
    body = b"\xef\xbb\xbfa;b;c\r\n1;2;3\r\n4;;\r\n7;8;9"  # a BOM, CRLF, empty cells, no final line break
    extra = {"fraction": 1.0, "features": None, **extra}
    rng = np.random.default_rng(0)
    fn = mutate.MUTATIONS[kind]
    done, out = CSV.restructure(body, AdapterOptions(), lambda t: fn(t, rng=rng, **extra))
    assert (done, out) == (True, want)
    rng = np.random.default_rng(0)
    parsed = CSV.read(body, AdapterOptions(), direction="response")
    assert parsed is not None
    assert CSV.write(parsed, fn(parsed.table, rng=rng, **extra).table) == want


@pytest.mark.parametrize("body", [
    b'id,note\n1,"a,b"\n', b"a,b\n1,2,3\n", b"a,b\r1,2\n", b"\xff\xfe,\n", b"price\n1.5\n\n2.5\n",
])
def test_what_might_read_differently_takes_the_table_s_way(body: bytes) -> None:
    calls: list[FeatureTable] = []

    def change(table: FeatureTable) -> mutate.Mutation:
        calls.append(table)
        return mutate.truncate_batch(table, rng=np.random.default_rng(0), fraction=0.5)

    assert CSV.restructure(body, AdapterOptions(), change) == (False, None)
    assert not calls  # the fault's draws are left to the table's way


def test_a_fault_that_makes_a_new_row_takes_the_table_s_way() -> None:
    def change(table: FeatureTable) -> mutate.Mutation:
        out = table.copy()
        out.columns = [c + [None] for c in out.columns]
        out.row_origin = [*table.row_origins(), None]
        return mutate.Mutation(out, 1, True, "")

    assert CSV.restructure(b"a,b\n1,2\n", AdapterOptions(), change) == (False, None)


IN_PLACE = ("shift", "out_of_range", "type_swap", "default")


def _value_extra(kind: str, data: Any, names: list[str]) -> dict[str, Any]:
    if kind == "shift":
        return {"scale": data.draw(st.sampled_from([1.0, 1.5, -2.0, 0.0])),
                "offset": data.draw(st.sampled_from([0.0, 3.0, -0.25]))}
    if kind == "out_of_range":
        return {"at": data.draw(st.sampled_from(["scaled", "extreme"])),
                "sign": data.draw(st.sampled_from(["both", "+", "-"]))}
    if kind == "default" and data.draw(st.booleans()):
        return {"values": {names[0]: data.draw(st.sampled_from([0, 1.5, "n/a", True, "a,b"]))}}
    return {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds(), st.sampled_from(IN_PLACE), st.floats(0, 1), st.integers(0, 2**32 - 1), st.data())
def test_a_value_fault_reading_only_its_features_is_the_table_s_result(
        case: tuple[bytes, bytes, bytes, int, list[list[bytes]]], kind: str, fraction: float, seed: int,
        data: Any) -> None:
    _check_against_the_table(case, kind, fraction, seed, data, "rewrite_values")


@pytest.mark.parametrize(("kind", "extra", "want"), [
    ("shift", {"features": ("b",), "scale": 2.0}, b"a;b;c\n1;4;3\n4;;\n7;16;9\n"),
    ("type_swap", {"features": ("c",)}, b'a;b;c\n1;2;"3"\n4;;\n7;8;"9"\n'),
    ("default", {"features": ("a", "b")}, b"a;b;c\n0;0;3\n0;0;\n0;0;9\n"),
    ("out_of_range", {"features": ("a",), "at": "extreme", "sign": "+"},
     b"a;b;c\n9223372036854775807;2;3\n9223372036854775807;;\n9223372036854775807;8;9\n"),
])
def test_value_faults_on_a_small_feed(kind: str, extra: dict[str, Any], want: bytes) -> None:
    body = b"a;b;c\n1;2;3\n4;;\n7;8;9\n"
    extra = {"fraction": 1.0, **extra}
    fn = mutate.MUTATIONS[kind]
    rng = np.random.default_rng(0)
    done, out = CSV.rewrite_values(body, AdapterOptions(), extra["features"], lambda t: fn(t, rng=rng, **extra))
    assert (done, out) == (True, want)
    rng = np.random.default_rng(0)
    parsed = CSV.read(body, AdapterOptions(), direction="response")
    assert parsed is not None
    assert CSV.write(parsed, fn(parsed.table, rng=rng, **extra).table) == want


def test_a_value_fault_that_changes_a_column_it_did_not_read_takes_the_table_s_way() -> None:
    def change(table: FeatureTable) -> mutate.Mutation:
        out = table.copy()
        out.columns[0][0] = 99  # column a, not among the features it was given (b)
        return mutate.Mutation(out, 1, True, "")

    assert CSV.rewrite_values(b"a,b\n1,2\n", AdapterOptions(), ("b",), change) == (False, None)
