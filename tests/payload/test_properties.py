"""Hypothesis: random valid payloads of every layout round-trip, mutate and write back consistently; random
invalid payloads never make a reader raise."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.payload import (
    MISSING,
    AdapterOptions,
    FeatureTable,
    detect,
    dumps,
    get_adapter,
    inline_binary,
    loads,
    pack_binary,
)
from proxy.payload.adapters.v2 import _encode
from proxy.payload.jsonpatch import apply_patch, format_pointer
from proxy.payload.mutate import MUTATIONS
from tests.payload import same, same_cells, wire

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
json_values = st.recursive(
    json_scalars, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=5), ch, max_size=4),
    max_leaves=15,
)
cell = st.one_of(st.integers(-(2**53), 2**53), st.floats(-1e12, 1e12, allow_nan=False), st.text(max_size=4),
                 st.booleans(), st.none())
number = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False))
names = st.lists(st.text(alphabet="abcxyz_ ~/", min_size=1, max_size=4), min_size=1, max_size=4, unique=True)


def extras(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=2)


def _prod(dims: list[int]) -> int:
    p = 1
    for d in dims:
        p *= d
    return p


def _nest(flat: list[Any], dims: list[int]) -> list[Any]:
    if len(dims) <= 1:
        return list(flat)
    step = _prod(dims[1:])
    return [_nest(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]


# ----------------------------------------------------------------------------------------- valid payloads
# each draws (adapter name, doc, options, pointer to the features)

@st.composite
def v2_docs(draw: st.DrawFn) -> tuple[str, Any, AdapterOptions, str]:
    n = draw(st.integers(0, 4))
    inputs = []
    matrix = draw(st.booleans())
    for name in (draw(names)[:1] if matrix else draw(names)):
        dt = draw(st.sampled_from(["FP32", "FP64", "INT32", "INT64", "UINT8", "BYTES", "BOOL"]))
        tail = [draw(st.integers(2, 4))] if matrix else draw(st.sampled_from([[], [1], [2], [2, 2]]))
        shape = [n, *tail]
        flat = draw(st.lists(number if matrix else cell, min_size=_prod(shape), max_size=_prod(shape)))
        data = _nest(flat, shape) if len(shape) >= 2 and draw(st.booleans()) else flat
        inp: dict[str, Any] = {"name": name, "shape": shape, "datatype": dt, "data": data}
        if draw(st.booleans()):
            inp["parameters"] = draw(st.dictionaries(st.text(max_size=4), json_scalars, max_size=2))
        inputs.append(inp)
    doc = draw(extras(["id", "outputs", "meta"]))
    if draw(st.booleans()):
        doc["parameters"] = {"content_type": "pd"}
    doc["inputs"] = inputs
    fnames = tuple(draw(st.lists(st.text(max_size=3), max_size=4, unique=True)))
    return "v2", doc, AdapterOptions(feature_names=fnames), "/inputs"


@st.composite
def rows_value(draw: st.DrawFn) -> Any:
    n = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["rows", "scalars", "records", "columns"]))
    if kind == "rows":
        f = draw(st.integers(1, 4))
        return [draw(st.lists(cell, min_size=f, max_size=f)) for _ in range(n)]
    if kind == "scalars":
        return draw(st.lists(cell, min_size=n, max_size=n))
    keys = draw(names)
    if kind == "records":
        return [draw(st.dictionaries(st.sampled_from(keys), cell, min_size=1)) for _ in range(n)]
    return {k: draw(st.lists(cell, min_size=n, max_size=n)) for k in keys}


@st.composite
def v1_docs(draw: st.DrawFn) -> tuple[str, Any, AdapterOptions, str]:
    key = draw(st.sampled_from(["instances", "inputs"]))
    doc = draw(extras(["signature_name", "parameters"]))
    doc[key] = draw(rows_value())
    fnames = tuple(draw(st.lists(st.text(max_size=3), max_size=4)))
    return "v1", doc, AdapterOptions(feature_names=fnames), f"/{key}"


@st.composite
def mlflow_docs(draw: st.DrawFn) -> tuple[str, Any, AdapterOptions, str]:
    key = draw(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs"]))
    doc = draw(extras(["params"]))
    if key == "dataframe_split":
        cols = draw(names)
        n = draw(st.integers(0, 4))
        split: dict[str, Any] = {"columns": cols, "data": [draw(st.lists(cell, min_size=len(cols),
                                                                         max_size=len(cols))) for _ in range(n)]}
        if draw(st.booleans()):
            split["index"] = draw(st.lists(st.integers(0, 100) | st.text(max_size=3), min_size=n, max_size=n))
        doc[key] = split
    elif key == "dataframe_records":
        keys = draw(names)
        doc[key] = [draw(st.dictionaries(st.sampled_from(keys), cell, min_size=1)) for _ in range(draw(
            st.integers(1, 4)))]
    else:
        doc[key] = draw(rows_value())
    return "mlflow", doc, AdapterOptions(), f"/{key}"


@st.composite
def generic_docs(draw: st.DrawFn) -> tuple[str, Any, AdapterOptions, str]:
    outer = draw(st.text(alphabet="ab/~", min_size=1, max_size=3))
    doc = {"keep": draw(json_values), outer: {"x": draw(rows_value()), "y": draw(json_values)}}
    pointer = format_pointer([outer, "x"])
    return "generic", doc, AdapterOptions(features_pointer=pointer), pointer


valid_docs = st.one_of(v2_docs(), v1_docs(), mlflow_docs(), generic_docs())


def _outside(doc: Any, pointer: str) -> Any:
    return apply_patch(doc, [{"op": "replace", "path": pointer, "value": "<features>"}])


@SETTINGS
@given(case=valid_docs)
def test_valid_payloads_round_trip_unchanged(case):
    name, doc, options, _pointer = case
    adapter = get_adapter(name)
    before = copy.deepcopy(doc)
    parsed = adapter.read_strict(doc, options)
    assert parsed is not None, doc
    parsed.table.validate()
    out = adapter.write(parsed, parsed.table.copy(), options)
    assert same(out, doc)
    assert same(doc, before)
    assert same(orjson.loads(dumps(out)), orjson.loads(dumps(doc)))


@st.composite
def mutation_args(draw: st.DrawFn, table: FeatureTable) -> tuple[str, dict[str, Any]]:
    fname = draw(st.sampled_from(sorted(MUTATIONS)))
    kwargs: dict[str, Any] = {"fraction": draw(st.floats(0, 1)), "rng": np.random.default_rng(draw(st.integers(0, 99)))}
    if fname not in ("truncate_batch",) and draw(st.booleans()):
        kwargs["features"] = draw(st.lists(st.sampled_from([*table.names, "zz"]), max_size=3))
    if fname == "shift":
        kwargs.update(scale=draw(st.floats(-10, 10)), offset=draw(st.floats(-1e3, 1e3)),
                      noise_std=draw(st.floats(0, 10)))
    elif fname == "out_of_range":
        kwargs.update(at=draw(st.sampled_from(["scaled", "extreme"])), sign=draw(st.sampled_from(["both", "+", "-"])))
    elif fname == "rename_feature":
        kwargs["suffix"] = draw(st.sampled_from(["_v2", "", "x"]))
    elif fname == "reorder_features":
        kwargs["mode"] = draw(st.sampled_from(["reverse", "shuffle"]))
    elif fname == "default":
        kwargs["values"] = draw(st.none() | st.dictionaries(st.sampled_from([*table.names, "zz"]), cell))
    elif fname == "stale":
        kwargs["rows"] = draw(st.lists(st.dictionaries(st.sampled_from([*table.names, "zz"]), cell), max_size=3))
    elif fname == "truncate_batch":
        kwargs.update(keep_min=draw(st.integers(0, 3)), where=draw(st.sampled_from(["random", "tail"])))
    return fname, kwargs


@SETTINGS
@given(case=valid_docs, data=st.data())
def test_mutated_tables_write_back_consistently(case, data):
    name, doc, options, pointer = case
    adapter = get_adapter(name)
    before = copy.deepcopy(doc)
    parsed = adapter.read_strict(doc, options)
    assert parsed is not None
    fname, kwargs = data.draw(mutation_args(parsed.table))
    m = MUTATIONS[fname](parsed.table, **kwargs)
    assert m.changed >= 0 and (m.applicable or m.changed == 0)
    m.table.validate()
    out = adapter.write(parsed, m.table, options)
    assert same(doc, before)
    sent = orjson.loads(dumps(out))
    assert same(_outside(sent, pointer), _outside(wire(doc), pointer))  # nothing else changed
    back = adapter.read_strict(sent, options)
    if back is not None and back.layout == parsed.layout:
        # a record key left only in rows that were dropped is no longer in the payload
        gone = [j for j, c in enumerate(m.table.columns) if c and all(v is MISSING for v in c)]
        if gone:
            m = MUTATIONS["drop_feature"](m.table, features=[m.table.names[j] for j in gone],
                                          rng=np.random.default_rng())
        if m.table.named and len(set(m.table.names)) == m.table.n_cols:
            # by name: the key order of ragged records is the order keys first appear in
            assert sorted(back.table.names) == sorted(m.table.names)
            order = [back.table.index(n) for n in m.table.names]
            reordered = FeatureTable(names=list(m.table.names), columns=[back.table.columns[j] for j in order],
                                     dtypes=[back.table.dtypes[j] for j in order], row_origin=back.table.row_origin)
            assert same_cells(reordered, m.table), (back.table, m.table)
            if not any(v is MISSING for c in m.table.columns for v in c):
                assert back.table.names == m.table.names
        else:
            assert same_cells(back.table, m.table), (back.table, m.table)
    if fname in ("nan", "out_of_range", "shift", "type_swap", "default", "stale") and m.applicable:
        assert m.table.names == parsed.table.names and m.table.n_rows == parsed.table.n_rows
    for column in m.table.columns:  # numbers stay finite (FP32 values stay within FP32)
        for v in column:
            assert not (isinstance(v, float) and math.isinf(v))


# --------------------------------------------------------------------------------------- invalid payloads

def _pointers(doc: Any, prefix: list[str] | None = None) -> list[list[str]]:
    prefix = prefix or []
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _pointers(v, [*prefix, k])
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _pointers(v, [*prefix, str(i)])
    return out


@st.composite
def corrupted(draw: st.DrawFn) -> Any:
    """A valid payload with one node replaced by arbitrary JSON (wrong shapes, ragged rows, strings, ...)."""
    _name, doc, _options, _pointer = draw(valid_docs)
    for _ in range(draw(st.integers(1, 3))):
        tokens = draw(st.sampled_from(_pointers(doc)))
        doc = apply_patch(doc, [{"op": "replace", "path": format_pointer(tokens), "value": draw(json_values)}])
    return doc


nan_values = st.recursive(
    st.one_of(json_scalars, st.floats()), lambda ch: st.lists(ch, max_size=4) | st.dictionaries(
        st.sampled_from(["inputs", "instances", "data", "shape", "name", "datatype", "outputs", "predictions",
                         "dataframe_split", "columns", "x"]), ch, max_size=4),
    max_leaves=25,
)
OPTIONS = [AdapterOptions(), AdapterOptions(feature_names=("a", "b")),
           AdapterOptions(features_pointer="/x", predictions_pointer="/predictions", output="a")]


@SETTINGS
@given(doc=st.one_of(corrupted(), nan_values, json_values))
def test_invalid_payloads_never_raise(doc):
    for name in ("v2", "v1", "mlflow", "feast", "generic"):
        adapter = get_adapter(name)
        for options in OPTIONS:
            # the strict readers: no safety net
            for parsed in (adapter.read_strict(doc, options), adapter.read_response_strict(doc, options)):
                if parsed is not None:
                    parsed.table.validate()
                    adapter.write(parsed, parsed.table, options)
            preds = adapter.predictions_strict(doc, options)
            assert preds is None or all(isinstance(v, list) for v in preds.values())
            if preds is not None:
                adapter.write_predictions_strict(doc, preds, options)
    detect("/v2/models/m/infer", doc)
    detect("/x", doc, {"inference-header-content-length": "x"})


@SETTINGS
@given(head=nan_values, tail=st.binary(max_size=64))
def test_binary_decoding_never_raises(head, tail):
    if isinstance(head, dict):
        doc = inline_binary(head, tail)
        if doc is not None:
            body, n = pack_binary(doc)
            assert loads(body[:n]) is not None


@SETTINGS
@given(values=st.lists(cell, max_size=6),
       dt=st.sampled_from(["BOOL", "INT8", "UINT64", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16"]))
def test_binary_encoding_refuses_what_does_not_fit(values, dt):
    encoded = _encode(values, dt)
    if encoded is not None:
        doc = {"inputs": [{"name": "t", "shape": [len(values)], "datatype": dt, "parameters": {"binary_data_size": 0},
                           "data": values}]}
        body, n = pack_binary(doc)
        back = inline_binary(*(loads(body[:n]), body[n:]))
        assert back is not None and len(back["inputs"][0]["data"]) == len(values)
