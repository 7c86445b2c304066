"""Feature mutations: each one on its own, then every mutation × every layout through read → mutate → write."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.payload import MISSING, AdapterOptions, FeatureTable, get_adapter
from proxy.payload import mutate as M
from proxy.payload.jsonpatch import apply_patch, resolve
from proxy.payload.table import FLOAT_DTYPES, FLOAT_MAX, INT_RANGES
from tests.payload import same, same_cells, wire

ABC = ("a", "b", "c")
A = [1.5, 2.5, -3.5, 4.25]
B = [1, 2, 3, 4]
C = [10.0, 20.0, 30.0, 40.0]
ROWS = [list(r) for r in zip(A, B, C, strict=True)]
RECS = [{"a": a, "b": b, "c": c} for a, b, c in ROWS]
COLS = {"a": A, "b": B, "c": C}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def table() -> FeatureTable:
    return FeatureTable.from_rows(list(ABC), ROWS)


# ------------------------------------------------------------------------------------------ single mutations

def test_nan_fraction_of_cells_is_exact_in_expectation_and_reproducible():
    m = M.nan(table(), fraction=0.5, rng=rng())
    assert m.applicable and m.changed == 6
    assert sum(isinstance(v, float) and math.isnan(v) for c in m.table.columns for v in c) == 6
    again = M.nan(table(), fraction=0.5, rng=rng())
    assert same_cells(m.table, again.table)
    counts = {M.nan(table(), fraction=0.3, rng=rng(s)).changed for s in range(30)}
    assert counts == {3, 4}  # 0.3 × 12 = 3.6 → 3 or 4
    assert M.nan(table(), fraction=0.0, rng=rng()).changed == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 20000), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_pick_cells_array_makes_nan_s_draws(n: int, fraction: float, seed: int) -> None:
    """The array a reader without a table indexes offsets with: the cells pick_cells (nan's) chooses, in order."""
    chosen = M.pick_cells_array(n, fraction, np.random.default_rng(seed))
    assert chosen.dtype == np.intp and chosen.tolist() == M.pick_cells(n, fraction, np.random.default_rng(seed))
    assert math.floor(fraction * n) <= chosen.size <= math.floor(fraction * n) + 1
    assert np.all(np.diff(chosen) > 0) and (chosen.size == 0 or (0 <= chosen[0] and chosen[-1] < n))


def test_mutations_never_change_their_input():
    t = table()
    before = copy.deepcopy(t)
    for name, f in M.MUTATIONS.items():
        kw: dict[str, Any] = {"rows": [{"a": 0}]} if name == "stale" else {}
        m = f(t, fraction=1.0, rng=rng(), **kw)
        assert m.table is not t
        # No list of the result is one of the input's: changing either later leaves the other as it is.
        assert not {id(c) for c in m.table.columns} & {id(c) for c in t.columns}, name
    shifted = M.shift(t, features=["a"], scale=2.0, rng=rng())  # the other columns stay as they were
    assert not {id(c) for c in shifted.table.columns} & {id(c) for c in t.columns}
    assert t == before


def test_features_select_columns_and_unknown_ones_are_noted():
    m = M.nan(table(), features=["b", "zz"], fraction=1.0, rng=rng())
    assert m.changed == 4 and "zz" in m.note
    assert all(math.isnan(v) for v in m.table.columns[1]) and m.table.columns[0] == A
    m = M.nan(table(), features=["zz"], rng=rng())
    assert not m.applicable and m.changed == 0 and "zz" in m.note
    assert M.nan(table(), features="b", rng=rng()).changed == 4  # a lone string is one name


def test_fraction_must_be_a_fraction():
    with pytest.raises(ValueError):
        M.nan(table(), fraction=1.5, rng=rng())
    with pytest.raises(ValueError):
        M.shift(table(), fraction=-0.1, rng=rng())


def test_out_of_range_stays_within_the_datatype():
    t = FeatureTable(names=["f32", "i32", "u8", "num_i", "f16"],
                     columns=[[1.0, -2.0], [5, 6], [1, 2], [7, 8], [0.5, 1.0]],
                     dtypes=["FP32", "INT32", "UINT8", "number", "FP16"])
    m = M.out_of_range(t, fraction=1.0, rng=rng())
    assert m.changed == 10
    f32, i32, u8, num_i, f16 = m.table.columns
    assert all(isinstance(v, float) and abs(v) == 2e6 for v in f32)  # 1e6 × max|column|
    lo, hi = INT_RANGES["INT32"]
    assert all(lo <= v <= hi for v in i32) and all(isinstance(v, int) for v in i32)
    assert all(abs(v) == 6_000_000 for v in i32)
    assert u8 == [255, 255]  # unsigned: only up, clamped
    assert all(isinstance(v, int) and abs(v) == 8_000_000 for v in num_i)
    assert all(abs(v) == FLOAT_MAX["FP16"] for v in f16)
    ext = M.out_of_range(t, fraction=1.0, rng=rng(), at="extreme", sign="+")
    assert ext.table.columns[0] == [FLOAT_MAX["FP32"]] * 2 and ext.table.columns[1] == [2**31 - 1] * 2
    assert np.isfinite(np.float32(ext.table.columns[0][0]))
    assert M.out_of_range(t, fraction=1.0, rng=rng(), at="extreme", sign="-").table.columns[1] == [-(2**31)] * 2
    big = FeatureTable(names=["x"], columns=[[1e305]], dtypes=["number"])
    assert M.out_of_range(big, rng=rng()).table.columns[0][0] in (FLOAT_MAX["FP64"], -FLOAT_MAX["FP64"])


def test_numeric_faults_skip_strings_bools_nulls_and_tensors():
    t = FeatureTable(names=["s", "b", "n", "t"], columns=[["x", "y"], [True, False], [None, None], [[1], [2]]],
                     dtypes=["string", "bool", "mixed", "mixed"])
    for f in (M.out_of_range, M.shift, M.type_swap):
        m = f(t, rng=rng())
        assert not m.applicable and "numeric" in m.note


def test_shift_rounds_and_clamps_ints():
    t = FeatureTable(names=["i", "f", "n"], columns=[[2**31 - 10, 3], [1.0, 2.0], [3, 4.5]],
                     dtypes=["INT32", "FP32", "number"])
    m = M.shift(t, scale=1.5, offset=0.2, rng=rng())
    assert m.table.columns[0] == [2**31 - 1, 5]  # clamped; 4.7 → 5
    assert m.table.columns[1] == [1.7, 3.2]
    assert m.table.columns[2] == [5, 6.95]  # a python int stays int, a float stays float
    noisy = M.shift(t, noise_std=1.0, fraction=0.5, rng=rng())
    assert noisy.changed >= 1 and sum(
        any(not math.isclose(x, y) for x, y in zip(a, b, strict=True))
        for a, b in zip(zip(*t.columns, strict=True), zip(*noisy.table.columns, strict=True), strict=True)) == 1


def test_shift_keeps_fp32_finite():
    t = FeatureTable(names=["x"], columns=[[3e38]], dtypes=["FP32"])
    assert M.shift(t, scale=10.0, rng=rng()).table.columns[0] == [FLOAT_MAX["FP32"]]


@settings(max_examples=300, deadline=None)
@given(columns=st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=3, max_size=3)
                        | st.lists(st.integers(-(2**40), 2**40), min_size=3, max_size=3), min_size=1, max_size=4),
       dtype=st.sampled_from(["number", "FP32", "FP64", "INT32", "mixed"]),
       scale=st.floats(-1e300, 1e300), offset=st.floats(-1e300, 1e300), fraction=st.sampled_from([1.0, 0.5]))
def test_shift_of_every_cell_is_x_times_scale_plus_offset_clamped_to_its_datatype(columns, dtype, scale, offset,
                                                                                   fraction):
    # The whole-column path (floats only, every row) and the per-cell path must agree with one definition.
    t = FeatureTable(names=[f"c{j}" for j in range(len(columns))], columns=copy.deepcopy(columns),
                     dtypes=[dtype] * len(columns))
    m = M.shift(t, scale=scale, offset=offset, fraction=fraction, rng=rng())
    assert t.columns == columns or any(x != x for c in columns for x in c)  # the input is never changed
    changed = 0
    for src, out in zip(columns, m.table.columns, strict=True):
        for v, w in zip(src, out, strict=True):
            if not (isinstance(v, int) or math.isfinite(v)):
                assert cells_equal_(v, w)  # NaN and inf cells are left alone
                continue
            x = float(v) * scale + offset
            if dtype == "INT32" or (dtype in ("number", "mixed") and isinstance(v, int)):
                lo, hi = INT_RANGES["INT32" if dtype == "INT32" else "INT64"]
                expected: float = int(min(max(round(x), lo), hi)) if math.isfinite(x) else (hi if x > 0 else lo)
                kind: type = int
            else:
                m_ = FLOAT_MAX["FP32" if dtype == "FP32" else "FP64"]
                expected = min(max(x, -m_), m_)
                kind = float
            if w == v:
                assert type(w) is type(v) and repr(w) == repr(v)  # left out by the fraction, or equal: kept as it was
                continue
            assert w == expected and type(w) is kind
            changed += 1
    # A table with no finite number in it (every cell NaN or inf, found by Hypothesis) has nothing to shift.
    finite = any(isinstance(v, int) or math.isfinite(v) for c in columns for v in c)
    assert m.changed == changed and m.applicable == finite


def cells_equal_(a: Any, b: Any) -> bool:
    return (a != a and b != b) or a == b


def test_drop_and_its_fraction_of_features():
    m = M.drop_feature(table(), features=["a", "c"], rng=rng())
    assert m.table.names == ["b"] and m.table.col_origin == [1] and m.changed == 2
    m = M.drop_feature(table(), fraction=0.1, rng=rng())
    assert m.changed == 1 and m.table.n_cols == 2  # at least one when fraction > 0
    everything = M.drop_feature(table(), rng=rng())
    assert everything.table.n_cols == 0 and everything.table.n_rows == 4


def test_rename():
    m = M.rename_feature(table(), mapping={"a": "A", "zz": "q"}, rng=rng())
    assert m.table.names == ["A", "b", "c"] and m.changed == 1 and m.table.col_origin == [0, 1, 2]
    clash = M.rename_feature(table(), mapping={"a": "b"}, rng=rng())
    assert clash.changed == 0 and "b" in clash.note and clash.table.names == list(ABC)
    unnamed = table()
    unnamed.named = False
    assert not M.rename_feature(unnamed, rng=rng()).applicable
    assert M.rename_feature(table(), suffix="_x", fraction=0.5, rng=rng()).changed == 2


def test_reorder():
    m = M.reorder_features(table(), rng=rng())
    assert m.table.names == ["c", "b", "a"] and m.table.col_origin == [2, 1, 0] and m.changed == 2
    m = M.reorder_features(table(), features=["a", "b"], rng=rng())
    assert m.table.names == ["b", "a", "c"]
    for seed in range(20):
        s = M.reorder_features(table(), mode="shuffle", rng=rng(seed))
        assert s.table.names != list(ABC) and sorted(s.table.names) == list(ABC)
    m = M.reorder_features(table(), order=["c", "a"], rng=rng())
    assert m.table.names == ["c", "b", "a"]
    assert not M.reorder_features(table(), features=["a"], rng=rng()).applicable


def test_type_swap():
    m = M.type_swap(table(), features=["a", "b"], rng=rng())
    assert m.table.columns[0] == ["1.5", "2.5", "-3.5", "4.25"] and m.table.columns[1] == ["1", "2", "3", "4"]
    assert m.table.dtypes == ["string", "string", "number"]
    half = M.type_swap(table(), features=["a"], fraction=0.5, rng=rng())
    assert half.table.dtypes[0] == "mixed" and half.changed == 2
    v2 = FeatureTable(names=["x"], columns=[[1.0, 2.0]], dtypes=["FP32"])
    assert M.type_swap(v2, fraction=0.5, rng=rng()).table.dtypes == ["BYTES"]


def test_default_values_and_zeros():
    t = FeatureTable(names=["i", "f", "s", "b", "n", "t"],
                     columns=[[5, 6], [1.5, 2.5], ["x", "y"], [True, True], [1, 2.5], [[1], MISSING]],
                     dtypes=["INT64", "FP32", "BYTES", "BOOL", "number", "mixed"])
    m = M.default(t, rng=rng())
    assert m.table.columns[:5] == [[0, 0], [0.0, 0.0], ["", ""], [False, False], [0.0, 0.0]]
    assert m.table.columns[5] == [[1], MISSING]  # tensors and missing keys untouched
    m = M.default(t, values={"i": -1, "zz": 0}, rng=rng())
    assert m.table.columns[0] == [-1, -1] and m.table.columns[1] == [1.5, 2.5] and m.changed == 2
    assert not M.default(t, values={"zz": 0}, rng=rng()).applicable


def test_stale_takes_earlier_rows_cyclically():
    past = [{"a": 100.0, "b": 200}, {"a": 101.0}]
    m = M.stale(table(), rows=past, rng=rng())
    assert m.table.columns[0] == [100.0, 101.0, 100.0, 101.0]
    assert m.table.columns[1] == [200, 2, 200, 4] and m.table.columns[2] == C
    assert m.changed == 6
    assert not M.stale(table(), rows=None, rng=rng()).applicable
    assert not M.stale(table(), rows=[{"zz": 1}], rng=rng()).applicable


def test_truncate_batch():
    m = M.truncate_batch(table(), fraction=0.5, rng=rng())
    assert m.table.n_rows == 2 and m.changed == 2 and len(m.table.row_origin or []) == 2
    tail = M.truncate_batch(table(), fraction=0.5, where="tail", rng=rng())
    assert tail.table.row_origin == [0, 1] and tail.table.columns[0] == A[:2]
    keep = M.truncate_batch(table(), fraction=1.0, keep_min=3, rng=rng())
    assert keep.table.n_rows == 3
    assert not M.truncate_batch(table(), keep_min=4, rng=rng()).applicable
    assert M.truncate_batch(table(), fraction=1.0, rng=rng()).table.n_rows == 0


# ------------------------------------------------------------------------ mutation × layout, end to end

def _v2_columnar() -> dict[str, Any]:
    return {"id": "7", "parameters": {"content_type": "pd"}, "outputs": [{"name": "predict"}], "inputs": [
        {"name": "a", "shape": [4], "datatype": "FP32", "data": A},
        {"name": "b", "shape": [4], "datatype": "INT64", "data": B, "parameters": {"content_type": "np"}},
        {"name": "c", "shape": [4, 1], "datatype": "FP64", "data": [[v] for v in C]},
    ]}


LAYOUTS: dict[str, tuple[str, dict[str, Any], AdapterOptions, str]] = {
    # layout: (adapter, doc, options, pointer to the feature value; other fields must stay equal)
    "v2.columnar": ("v2", _v2_columnar(), AdapterOptions(), "/inputs"),
    "v2.matrix": ("v2", {"id": "m", "inputs": [{"name": "x", "shape": [4, 3], "datatype": "FP32", "data": [
        v for r in ROWS for v in r], "parameters": {"k": 1}}]}, AdapterOptions(feature_names=ABC), "/inputs"),
    "v2.matrix.nested": ("v2", {"inputs": [{"name": "x", "shape": [4, 3], "datatype": "FP64", "data": ROWS}],
                                "outputs": []}, AdapterOptions(feature_names=ABC), "/inputs"),
    "v1.rows": ("v1", {"signature_name": "s", "instances": ROWS}, AdapterOptions(feature_names=ABC), "/instances"),
    "v1.records": ("v1", {"instances": RECS, "parameters": {"p": 1}}, AdapterOptions(), "/instances"),
    "v1.columns": ("v1", {"inputs": COLS, "signature_name": "s"}, AdapterOptions(), "/inputs"),
    "v1.columns_in_list": ("v1", {"instances": [COLS]}, AdapterOptions(), "/instances"),
    "mlflow.split": ("mlflow", {"dataframe_split": {"index": [9, 8, 7, 6], "columns": list(ABC), "data": ROWS},
                                "params": {"t": 0.1}}, AdapterOptions(), "/dataframe_split"),
    "mlflow.records": ("mlflow", {"dataframe_records": RECS}, AdapterOptions(), "/dataframe_records"),
    "mlflow.rows": ("mlflow", {"instances": ROWS}, AdapterOptions(feature_names=ABC), "/instances"),
    "mlflow.columns": ("mlflow", {"inputs": COLS, "params": {}}, AdapterOptions(), "/inputs"),
    "generic.rows": ("generic", {"m": 1, "f": {"r": ROWS, "k": "v"}},
                     AdapterOptions(features_pointer="/f/r", feature_names=ABC), "/f/r"),
    "generic.records": ("generic", {"m": 1, "f": RECS}, AdapterOptions(features_pointer="/f"), "/f"),
    "generic.columns": ("generic", {"m": [1], "f": COLS}, AdapterOptions(features_pointer="/f"), "/f"),
}

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "nan": ("nan", {"fraction": 0.5}),
    "out_of_range": ("out_of_range", {"fraction": 0.5}),
    "shift": ("shift", {"scale": 2.0, "offset": 1.0}),
    "shift_noise": ("shift", {"noise_std": 0.5, "fraction": 0.5}),
    "drop_feature": ("drop_feature", {"features": ["b"]}),
    "rename_feature": ("rename_feature", {"features": ["b"]}),
    "reorder_features": ("reorder_features", {}),
    "type_swap": ("type_swap", {"features": ["a"]}),
    "default": ("default", {"values": {"a": -1.0}}),
    "stale": ("stale", {"rows": [{"a": 100.0, "b": 200, "c": 300.0}], "fraction": 0.5}),
    "truncate_batch": ("truncate_batch", {"fraction": 0.5, "keep_min": 2}),
}


def _check_mutation(case: str, t: FeatureTable, m: M.Mutation) -> None:
    """What each mutation promises on the table, whatever the layout."""
    col = {n: m.table.columns[j] for j, n in enumerate(m.table.names)}
    if case == "nan":
        assert m.changed == 6 and sum(isinstance(v, float) and math.isnan(v) for c in m.table.columns for v in c) == 6
    elif case == "out_of_range":
        assert m.changed == 6 and sum(abs(v) >= 1e6 for c in m.table.columns for v in c) == 6
    elif case == "shift":
        assert m.changed == 12
        assert col["a"] == [v * 2 + 1 for v in A] and col["b"] == [v * 2 + 1 for v in B]
        b_float = m.table.dtypes[m.table.index("b")] in FLOAT_DTYPES  # a V2 float matrix keeps floats
        assert all(isinstance(v, float if b_float else int) for v in col["b"])
    elif case == "shift_noise":
        assert 3 <= m.changed <= 6  # two rows × three features; an int can round back to itself
    elif case == "drop_feature":
        assert m.changed == 1 and m.table.n_cols == 2 and "b" not in m.table.names
    elif case == "rename_feature":
        assert m.changed == 1 and m.table.names == ["a", "b_renamed", "c"]
    elif case == "reorder_features":
        assert m.changed == 2 and m.table.names == ["c", "b", "a"] and col["a"] == A
    elif case == "type_swap":
        assert col["a"] == [str(v) for v in A]
    elif case == "default":
        assert col["a"] == [-1.0] * 4 and col["b"] == B
    elif case == "stale":
        assert m.changed == 6 and sum(v == 100.0 for v in col["a"]) == 2
    elif case == "truncate_batch":
        assert m.changed == 2 and m.table.n_rows == 2


def _without(doc: Any, pointer: str) -> Any:
    return apply_patch(doc, [{"op": "replace", "path": pointer, "value": "<features>"}])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_mutation_by_layout(layout, case):
    adapter_name, doc, options, pointer = LAYOUTS[layout]
    adapter = get_adapter(adapter_name)
    original = copy.deepcopy(doc)
    parsed = adapter.read(doc, options)
    assert parsed is not None and parsed.layout == layout.removesuffix(".nested").replace(".columns_in_list",
                                                                                         ".columns")
    fname, kwargs = CASES[case]
    m = M.MUTATIONS[fname](parsed.table, rng=rng(1), **kwargs)
    if case == "rename_feature" and not parsed.table.named:
        assert not m.applicable and m.changed == 0 and "named" in m.note
        return
    assert m.applicable, m.note
    _check_mutation(case, parsed.table, m)

    out = adapter.write(parsed, m.table, options)
    assert same(doc, original)  # the request read is never changed
    back = adapter.read(wire(out), options)
    assert back is not None, out
    assert same_cells(back.table, m.table), (back.table, m.table)
    if m.table.named:
        assert back.table.names == m.table.names
    # every field outside the features is as it was
    assert same(_without(out, pointer), _without(doc, pointer))
    if layout == "mlflow.split":
        split = out["dataframe_split"]
        assert split["columns"] == m.table.names
        assert split["index"] == [[9, 8, 7, 6][r] for r in m.table.row_origins()]  # type: ignore[index]
    if adapter_name == "v2":
        for j, inp in enumerate(out["inputs"]):
            o = (m.table.col_origin or [])[j] if layout == "v2.columnar" else 0
            extra = {k: v for k, v in inp.items() if k not in ("name", "shape", "datatype", "data")}
            src = resolve(doc, f"/inputs/{o}")
            assert same(extra, {k: v for k, v in src.items() if k not in ("name", "shape", "datatype", "data")})
            assert inp["shape"][0] == m.table.n_rows
        if layout == "v2.columnar":
            assert [i["name"] for i in out["inputs"]] == m.table.names
            if case == "type_swap":
                assert out["inputs"][0]["datatype"] == "BYTES" and back.table.dtypes[0] == "BYTES"
        else:
            assert out["inputs"][0]["shape"] == [m.table.n_rows, m.table.n_cols]
