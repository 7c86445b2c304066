"""FeatureTable and the cell helpers."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.payload import dumps, loads
from proxy.payload.table import (
    FLOAT_MAX,
    INT_RANGES,
    MISSING,
    FeatureTable,
    all_floats,
    cells_equal,
    infer_dtype,
    is_number,
    is_scalar,
    number_rows,
    resolve_col_origin,
    resolve_row_origin,
)


def _table() -> FeatureTable:
    return FeatureTable.from_rows(["a", "b"], [[1, "x"], [2.5, MISSING], [None, "z"]])


def test_shape_lookup_and_rows():
    t = _table()
    assert (t.n_rows, t.n_cols) == (3, 2)
    assert t.index("b") == 1
    assert t.column("a") == [1, 2.5, None]
    assert t.row(1) == {"a": 2.5}  # MISSING left out
    assert t.rows() == [{"a": 1, "b": "x"}, {"a": 2.5}, {"a": None, "b": "z"}]
    with pytest.raises(KeyError):
        t.index("nope")
    assert t.dtypes == ["number", "string"]
    assert t.col_origin == [0, 1] and t.row_origin == [0, 1, 2]


def test_copy_is_independent():
    t = _table()
    c = t.copy()
    c.columns[0][0] = 99
    c.names[0] = "z"
    c.row_origin.append(7)  # type: ignore[union-attr]
    assert t.columns[0][0] == 1 and t.names[0] == "a" and t.row_origin == [0, 1, 2]


def test_row_count_survives_dropping_every_column():
    t = FeatureTable(names=[], columns=[], dtypes=[], row_origin=[0, 1, 2])
    assert t.n_rows == 3
    assert FeatureTable(names=[], columns=[], dtypes=[]).n_rows == 0


def test_validate():
    _table().validate()
    with pytest.raises(ValueError):
        FeatureTable(names=["a"], columns=[], dtypes=["number"]).validate()
    with pytest.raises(ValueError):
        FeatureTable(names=["a", "b"], columns=[[1], [1, 2]], dtypes=["number"] * 2).validate()
    with pytest.raises(ValueError):
        FeatureTable(names=["a"], columns=[[1]], dtypes=["number"], col_origin=[0, 1]).validate()
    with pytest.raises(ValueError):
        FeatureTable(names=["a"], columns=[[1]], dtypes=["number"], row_origin=[]).validate()


@pytest.mark.parametrize(("values", "dtype"), [
    ([1, 2.5, None], "number"), (["a", None], "string"), ([True, False], "bool"), ([1, "a"], "mixed"),
    ([True, 1], "mixed"), ([None, MISSING, math.nan], "number"), ([None, MISSING], "mixed"), ([[1, 2]], "mixed"),
    ([], "mixed"),
])
def test_infer_dtype(values, dtype):
    assert infer_dtype(values) == dtype


def test_cell_predicates():
    assert is_number(1) and is_number(1.5) and not is_number(True) and not is_number("1")
    assert all(is_scalar(v) for v in (None, True, 1, 1.5, "s"))
    assert not any(is_scalar(v) for v in ([1], {"a": 1}, MISSING))
    assert cells_equal(math.nan, math.nan)
    assert cells_equal(1, 1.0) and not cells_equal(1, True) and not cells_equal(True, 1)
    assert not cells_equal("1", 1) and cells_equal([1, math.nan], [1, math.nan])
    assert not cells_equal(None, 0) and cells_equal({"a": [1]}, {"a": [1]})


_CELLS = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=2),
                   st.lists(st.integers(), max_size=2))


@given(st.lists(st.one_of(st.lists(_CELLS, max_size=4), _CELLS), max_size=5))
def test_number_rows_is_the_width_of_a_batch_of_number_vectors_or_minus_one(rows):
    widths = {len(r) for r in rows if type(r) is list}
    numbers = all(type(r) is list and r and all(type(x) in (int, float) for x in r) for r in rows)
    expected = widths.pop() if rows and numbers and len(widths) == 1 else -1
    assert number_rows(rows) == expected


def test_number_rows_refuses_bools_and_ragged_batches():
    assert number_rows([[0.1, 0.9], [1, 0]]) == 2
    assert number_rows([[0.1, True]]) == -1  # a bool is not a JSON number
    assert number_rows([[0.1, 0.9], [0.5]]) == -1 and number_rows([[]]) == -1 and number_rows([]) == -1


@given(st.lists(_CELLS, max_size=6))
def test_all_floats_is_isinstance_float_for_every_value(values):
    assert all_floats(values) == all(isinstance(v, float) for v in values)


def test_missing_is_a_singleton():
    assert copy.deepcopy(MISSING) is MISSING and copy.copy(MISSING) is MISSING and repr(MISSING) == "MISSING"


def test_ranges():
    assert INT_RANGES["INT32"] == (-(2**31), 2**31 - 1)
    assert INT_RANGES["UINT8"] == (0, 255)
    assert FLOAT_MAX["FP32"] == pytest.approx(3.4028234663852886e38)
    assert FLOAT_MAX["FP16"] == 65504.0


def test_origins_fall_back_to_names_and_positions():
    t = FeatureTable(names=["b", "new", "a"], columns=[[1], [2], [3]], dtypes=["number"] * 3)
    assert resolve_col_origin(t, ["a", "b"]) == [1, None, 0]
    t.col_origin = [1, None, 5]
    assert resolve_col_origin(t, ["a", "b"]) == [1, None, None]
    assert resolve_row_origin(t, 0) == [None]
    assert resolve_row_origin(t, 3) == [0]


def test_dumps_and_loads():
    doc = {"a": [1.5, math.nan, None], "b": "é", "c": 2**64 - 1}
    assert dumps(doc) == b'{"a":[1.5,null,null],"b":"\xc3\xa9","c":18446744073709551615}'
    assert dumps(doc, nan_token=True) == b'{"a":[1.5,NaN,null],"b":"\xc3\xa9","c":18446744073709551615}'
    assert dumps({"big": 2**70, "x": math.nan}) == b'{"big":1180591620717411303424,"x":null}'  # stdlib fallback
    assert loads(b'{"a":NaN}')["a"] != loads(b'{"a":NaN}')["a"]  # the NaN token some clients send
    assert loads('{"a": 1}') == {"a": 1}
    for bad in (b"{", b"\xff", b"NaN NaN"):
        with pytest.raises(ValueError):
            loads(bad)
