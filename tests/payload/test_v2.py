"""Open Inference Protocol V2: columnar and matrix layouts, predictions, the binary tensor extension."""

from __future__ import annotations

import copy
import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from proxy.payload import (
    DEFAULT_OPTIONS,
    AdapterOptions,
    detect,
    dumps,
    get_adapter,
    inline_binary,
    pack_binary,
    split_binary,
)
from proxy.payload import mutate as M
from proxy.payload.adapters.v2 import V2Adapter
from proxy.payload.table import FeatureTable
from tests.payload import same, wire

V2 = get_adapter("v2")
assert isinstance(V2, V2Adapter)
ABC = AdapterOptions(feature_names=("a", "b", "c"))

# MLServer's pd example (docs/user-guide/content-type.md), plus fields that must survive.
PD: dict[str, Any] = {
    "id": "42", "parameters": {"content_type": "pd"},
    "inputs": [
        {"name": "First Name", "datatype": "BYTES", "parameters": {"content_type": "str"}, "shape": [2],
         "data": ["Joanne", "Michael"]},
        {"name": "Age", "datatype": "INT32", "shape": [2], "data": [34, 22]},
    ],
    "outputs": [{"name": "predict"}],
}
COLUMNAR_N1: dict[str, Any] = {
    "inputs": [
        {"name": "a", "datatype": "FP32", "shape": [3, 1], "data": [[1.5], [2.5], [3.5]], "parameters": {"x": 1}},
        {"name": "b", "datatype": "INT64", "shape": [3, 1], "data": [[1], [2], [3]]},
    ],
}
MATRIX: dict[str, Any] = {"id": "m", "inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32",
                                 "data": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}], "outputs": [{"name": "predict"}]}
MATRIX_NESTED: dict[str, Any] = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64",
                             "data": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}]}
TENSOR_CELLS: dict[str, Any] = {"inputs": [
    {"name": "img", "shape": [2, 2, 2], "datatype": "FP32", "data": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]},
    {"name": "k", "shape": [2], "datatype": "INT32", "data": [7, 8]},
]}


def _read(doc, options=DEFAULT_OPTIONS):
    parsed = V2.read_strict(doc, options)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize("path", [
    "/v2/models/iris/infer", "/v2/models/iris/versions/3/infer", "/v2/models/iris/infer?x=1",
    "/seldon/ns/iris/v2/models/iris/infer",
])
def test_detect_by_path(path):
    assert detect(path, None) is V2


def test_detect_by_body_and_header():
    assert detect("/predict", PD) is V2
    assert detect("/predict", {"inputs": [{"name": "a"}]}) is None
    assert detect("/predict", b"\x00", {"Inference-Header-Content-Length": "12"}) is V2
    assert detect("/predict", b"\x00", [(b"inference-header-content-length", b"12")]) is V2
    assert detect("/v2/models/iris", {"inputs": []}) is None


@pytest.mark.parametrize("doc", [PD, COLUMNAR_N1, MATRIX, MATRIX_NESTED, TENSOR_CELLS])
def test_unchanged_table_writes_the_same_doc(doc):
    before = copy.deepcopy(doc)
    parsed = _read(doc, ABC)
    out = V2.write(parsed, parsed.table.copy())
    assert same(out, doc)
    assert same(doc, before)  # the input is never mutated
    out["inputs"][0]["name"] = "changed"
    assert doc["inputs"][0]["name"] != "changed"  # and shares nothing with the output


def test_pd_columnar_reads_one_column_per_input():
    p = _read(PD)
    assert p.layout == "v2.columnar" and p.table.named
    assert p.table.names == ["First Name", "Age"]
    assert p.table.columns == [["Joanne", "Michael"], [34, 22]]
    assert p.table.dtypes == ["BYTES", "INT32"]


def test_n1_inputs_give_scalar_cells_and_stay_nested():
    p = _read(COLUMNAR_N1)
    assert p.table.columns == [[1.5, 2.5, 3.5], [1, 2, 3]]
    t = p.table.copy()
    t.columns[1][0] = 10
    out = V2.write(p, t)
    assert out["inputs"][1]["data"] == [[10], [2], [3]]
    assert out["inputs"][0]["parameters"] == {"x": 1}


def test_matrix_reads_columns_with_policy_names():
    p = _read(MATRIX, ABC)
    assert p.layout == "v2.matrix" and not p.table.named
    assert p.table.names == ["a", "b", "c"]
    assert p.table.columns == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    # a count that does not match makes names up rather than mislabel columns
    p2 = _read(MATRIX, AdapterOptions(feature_names=("a", "b")))
    assert p2.table.names == ["input-0[0]", "input-0[1]", "input-0[2]"]


def test_single_n1_input_is_a_matrix_only_when_the_policy_names_one_feature():
    doc = {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1, 2]}]}
    assert _read(doc).layout == "v2.columnar"
    assert _read(doc, AdapterOptions(feature_names=("f",))).layout == "v2.matrix"


def test_tensor_cells_keep_their_row_shape():
    p = _read(TENSOR_CELLS)
    assert p.table.columns[0] == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    m = M.truncate_batch(p.table, fraction=0.5, rng=np.random.default_rng(1), where="tail")
    out = V2.write(p, m.table)
    assert out["inputs"][0] == {"name": "img", "shape": [1, 2, 2], "datatype": "FP32", "data": [[[1, 2], [3, 4]]]}
    assert out["inputs"][1]["shape"] == [1] and out["inputs"][1]["data"] == [7]
    # value faults leave tensor cells alone
    assert M.nan(p.table, features=["img"], rng=np.random.default_rng(0)).changed == 0


def test_flat_tensor_cells_are_written_flat():
    doc = {"inputs": [{"name": "v", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                      {"name": "w", "shape": [2], "datatype": "FP32", "data": [5, 6]}]}
    p = _read(doc)
    assert p.table.columns[0] == [[1, 2], [3, 4]]
    t = p.table.copy()
    t.columns[0][1] = [9, 9]
    assert V2.write(p, t)["inputs"][0]["data"] == [1, 2, 9, 9]
    t.columns[0][1] = [9]
    with pytest.raises(ValueError):
        V2.write(p, t)


def test_columnar_structural_writes():
    p = _read(PD)
    rng = np.random.default_rng(0)
    renamed = V2.write(p, M.rename_feature(p.table, features=["Age"], rng=rng).table)
    assert [i["name"] for i in renamed["inputs"]] == ["First Name", "Age_renamed"]
    dropped = V2.write(p, M.drop_feature(p.table, features=["First Name"], rng=rng).table)
    assert dropped["inputs"] == [PD["inputs"][1]] and dropped["outputs"] == PD["outputs"]
    reordered = V2.write(p, M.reorder_features(p.table, rng=rng).table)
    assert [i["name"] for i in reordered["inputs"]] == ["Age", "First Name"]
    assert reordered["inputs"][1]["parameters"] == {"content_type": "str"}
    swapped = V2.write(p, M.type_swap(p.table, rng=rng).table)
    assert swapped["inputs"][1] == {"name": "Age", "datatype": "BYTES", "shape": [2], "data": ["34", "22"]}
    truncated = V2.write(p, M.truncate_batch(p.table, fraction=0.5, rng=rng, where="tail").table)
    assert [(i["shape"], i["data"]) for i in truncated["inputs"]] == [([1], ["Joanne"]), ([1], [34])]
    assert truncated["id"] == "42" and truncated["parameters"] == {"content_type": "pd"}


def test_a_new_column_becomes_a_new_input():
    p = _read(PD)
    t = p.table.copy()
    t.names.append("Height")
    t.columns.append([1.8, 1.7])
    t.dtypes.append("number")
    t.col_origin.append(None)
    out = V2.write(p, t)
    assert out["inputs"][2] == {"name": "Height", "shape": [2], "datatype": "FP64", "data": [1.8, 1.7]}


def test_matrix_structural_writes():
    rng = np.random.default_rng(0)
    p = _read(MATRIX_NESTED, ABC)
    dropped = V2.write(p, M.drop_feature(p.table, features=["b"], rng=rng).table)
    assert dropped["inputs"][0]["shape"] == [2, 2] and dropped["inputs"][0]["data"] == [[1.0, 3.0], [4.0, 6.0]]
    reordered = V2.write(p, M.reorder_features(p.table, rng=rng).table)
    assert reordered["inputs"][0]["data"] == [[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]
    r = M.rename_feature(p.table, rng=rng)
    assert not r.applicable and "named" in r.note
    p = _read(MATRIX, ABC)
    truncated = V2.write(p, M.truncate_batch(p.table, fraction=0.5, rng=rng, where="tail").table)
    assert truncated["inputs"][0]["shape"] == [1, 3] and truncated["inputs"][0]["data"] == [1.0, 2.0, 3.0]
    swapped = V2.write(p, M.type_swap(p.table, features=["a"], rng=rng).table)
    assert swapped["inputs"][0]["datatype"] == "FP32"  # one tensor, one datatype: strings inside FP32
    assert swapped["inputs"][0]["data"] == ["1.0", 2.0, 3.0, "4.0", 5.0, 6.0]
    all_swapped = V2.write(p, M.type_swap(p.table, rng=rng).table)
    assert all_swapped["inputs"][0]["datatype"] == "BYTES"


def test_nan_is_written_as_null_unless_asked():
    p = _read(MATRIX, ABC)
    m = M.nan(p.table, features=["a"], rng=np.random.default_rng(0))
    out = V2.write(p, m.table)
    assert dumps(out).count(b"null") == 2
    body = dumps(out, nan_token=True)
    assert b"NaN" in body and b" " not in body
    assert orjson.loads(dumps(out))["inputs"][0]["data"][0] is None


@pytest.mark.parametrize("doc", [
    {}, [], {"inputs": []}, {"inputs": {}}, {"inputs": [1]},
    {"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1]}]},  # shape/data mismatch
    {"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}]},  # ragged
    {"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], 3, 4]}]},
    {"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32", "data": []}]},
    {"inputs": [{"name": "a", "shape": [True], "datatype": "FP32", "data": [1]}]},
    {"inputs": [{"name": "a", "shape": [1], "datatype": 3, "data": [1]}]},
    {"inputs": [{"name": 1, "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [{"x": 1}]}]},
    {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
    {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": 1}]},
    {"inputs": [{"name": "a", "shape": [], "datatype": "FP32", "data": [1]}]},
    {"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                {"name": "b", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]},  # different row counts
])
def test_unparseable_requests_give_none(doc):
    assert V2.read_strict(doc, AdapterOptions()) is None
    assert V2.read(doc) is None


def test_strings_where_numbers_should_be_are_read_as_found():
    doc = {"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": ["abc", 1]}]}
    assert _read(doc).table.columns == [["abc", 1]]


# ------------------------------------------------------------------------------------------- predictions

MLSERVER_RESPONSE: dict[str, Any] = {"model_name": "iris", "model_version": "v1", "id": "x", "parameters": {},
                     "outputs": [{"name": "predict", "shape": [2, 1], "datatype": "INT64",
                                  "parameters": {"content_type": "np"}, "data": [0, 2]}]}
KSERVE_RESPONSE: dict[str, Any] = {"model_name": "iris", "model_version": None, "id": "x", "parameters": None,
                   "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT64", "data": [0, 2]}]}
PROBA_RESPONSE: dict[str, Any] = {"outputs": [
    {"name": "predict_proba", "shape": [2, 3], "datatype": "FP64", "data": [[0.8, 0.1, 0.1], [0.2, 0.3, 0.5]]},
    {"name": "label", "shape": [2], "datatype": "BYTES", "data": ["setosa", "virginica"]},
]}


def test_predictions_per_row():
    assert V2.predictions(MLSERVER_RESPONSE) == {"predict": [0, 2]}
    assert V2.predictions(KSERVE_RESPONSE) == {"output-0": [0, 2]}
    assert V2.predictions(PROBA_RESPONSE) == {
        "predict_proba": [[0.8, 0.1, 0.1], [0.2, 0.3, 0.5]], "label": ["setosa", "virginica"]}
    assert V2.predictions(PROBA_RESPONSE, AdapterOptions(output="label")) == {"label": ["setosa", "virginica"]}
    assert V2.predictions(PROBA_RESPONSE, AdapterOptions(output="nope")) is None
    assert V2.predictions({"error": "boom"}) is None
    assert V2.predictions({"outputs": [{"name": "o", "shape": [1, 2, 2], "datatype": "FP32",
                                        "data": [1, 2, 3, 4]}]}) is None


@pytest.mark.parametrize("doc", [MLSERVER_RESPONSE, KSERVE_RESPONSE, PROBA_RESPONSE])
def test_predictions_write_back_in_place(doc):
    preds = V2.predictions(doc)
    assert preds is not None
    assert same(V2.write_predictions(doc, preds), doc)
    changed = {k: [v if not isinstance(v, int) else v + 1 for v in vs] for k, vs in preds.items()}
    out = V2.write_predictions(doc, changed)
    assert out is not None and V2.predictions(out) == changed
    assert {k: v for k, v in out.items() if k != "outputs"} == {k: v for k, v in doc.items() if k != "outputs"}


def test_predictions_that_do_not_fit_are_refused():
    assert V2.write_predictions(MLSERVER_RESPONSE, {"predict": [1]}) is None
    assert V2.write_predictions(MLSERVER_RESPONSE, {"other": [1, 2]}) is None
    assert V2.write_predictions(PROBA_RESPONSE, {"predict_proba": [[1.0], [1.0]]}) is None


# ------------------------------------------------------------------------------------------ binary extension

def _binary_request():
    head = {"id": "b", "inputs": [
        {"name": "a", "shape": [2, 1], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        {"name": "b", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
        {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 14}},
        {"name": "j", "shape": [2], "datatype": "BOOL", "data": [True, False]},
    ], "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}
    json_head = orjson.dumps(head)
    tail = (np.array([1.5, -2.25], dtype="<f4").tobytes() + np.array([7, -8], dtype="<i4").tobytes()
            + struct.pack("<I", 3) + b"abc" + struct.pack("<I", 3) + "é!".encode())
    return json_head + tail, len(json_head)


def test_binary_round_trip_is_byte_exact():
    body, n = _binary_request()
    head, tail = split_binary(body, n)  # type: ignore[misc]
    doc = inline_binary(head, tail)
    assert doc is not None
    assert [i.get("data") for i in doc["inputs"]] == [[1.5, -2.25], [7, -8], ["abc", "é!"], [True, False]]
    p = _read(doc)
    assert p.table.names == ["a", "b", "s", "j"]
    new_body, new_n = pack_binary(V2.write(p, p.table))
    assert (new_body, new_n) == (body, n)


def test_binary_mutations_are_encoded_and_sizes_updated():
    body, n = _binary_request()
    doc = inline_binary(*split_binary(body, n))  # type: ignore[misc]
    assert doc is not None
    p = _read(doc)
    rng = np.random.default_rng(0)
    m = M.nan(p.table, features=["a", "b"], rng=rng)
    m = M.truncate_batch(m.table, fraction=0.5, rng=rng, where="tail")
    new_body, new_n = pack_binary(V2.write(p, m.table))
    head = orjson.loads(new_body[:new_n])
    a, b, s, j = head["inputs"]
    assert a["parameters"]["binary_data_size"] == 4 and "data" not in a
    assert b["data"] == [None] and "binary_data_size" not in b["parameters"]  # NaN has no INT32 encoding: JSON
    assert s["parameters"]["binary_data_size"] == 7 and j["data"] == [True]
    tail = new_body[new_n:]
    assert len(tail) == 4 + 7
    assert math.isnan(np.frombuffer(tail[:4], dtype="<f4")[0])
    assert inline_binary(head, tail)["inputs"][2]["data"] == ["abc"]  # type: ignore[index]


def test_binary_response_predictions():
    head = {"outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": 16}}]}
    json_head = orjson.dumps(head)
    body = json_head + np.array([0, 2], dtype="<i8").tobytes()
    doc = inline_binary(*split_binary(body, len(json_head)))  # type: ignore[misc]
    preds = V2.predictions(doc)
    assert preds == {"predict": [0, 2]}
    written = V2.write_predictions(doc, {"predict": [1, 1]})
    assert written is not None
    new_body, new_n = pack_binary(written)
    assert np.frombuffer(new_body[new_n:], dtype="<i8").tolist() == [1, 1]


@pytest.mark.parametrize(("dt", "values"), [
    ("FP16", [0.5, -1.0]), ("FP64", [1e300, -0.0]), ("INT8", [-128, 127]), ("INT16", [1, -1]),
    ("INT64", [2**63 - 1, -(2**63)]), ("UINT8", [0, 255]), ("UINT16", [1, 2]), ("UINT32", [2**32 - 1, 0]),
    ("UINT64", [2**64 - 1, 0]), ("BOOL", [True, False]), ("BYTES", ["", "x" * 300]),
])
def test_binary_datatypes_round_trip(dt, values):
    doc = {"inputs": [{"name": "t", "shape": [2], "datatype": dt, "parameters": {"binary_data_size": 0},
                      "data": values}]}
    body, n = pack_binary(doc)
    back = inline_binary(*split_binary(body, n))  # type: ignore[misc]
    assert back is not None and same(back["inputs"][0]["data"], values)


@pytest.mark.parametrize(("head", "tail"), [
    ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}, b"\0" * 7),
    ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}, b"\0" * 9),
    ({"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}, b"\0" * 8),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "BF16", "parameters": {"binary_data_size": 2}}]}, b"\0" * 2),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}]},
     struct.pack("<I", 9)),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]},
     struct.pack("<I", 1) + b"\xff"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": -4}}]}, b""),
    ({"inputs": [{"name": "a", "shape": "x", "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}, b"\0" * 4),
])
def test_binary_that_does_not_decode_passes_through(head, tail):
    assert inline_binary(head, tail) is None


def test_split_binary_refuses_bad_heads():
    assert split_binary(b'{"a":1}xx', 7) == ({"a": 1}, b"xx")
    assert split_binary(b'{"a":1}', 8) is None
    assert split_binary(b'{"a":1}', -1) is None
    assert split_binary(b"[1]", 3) is None
    assert split_binary(b"{nope", 5) is None


def test_table_built_by_hand_is_matched_by_name():
    p = _read(PD)
    t = FeatureTable(names=["Age", "First Name"], columns=[[1, 2], ["x", "y"]], dtypes=["INT32", "BYTES"])
    out = V2.write(p, t)
    assert out["inputs"][0] == {"name": "Age", "datatype": "INT32", "shape": [2], "data": [1, 2]}
    assert out["inputs"][1]["parameters"] == {"content_type": "str"}
    assert wire(out) == out


@pytest.mark.parametrize("shape", [[0, 10**9], [10**9, 0], [0, 2**62, 2**62], [3, 0, 10**9]])
def test_empty_tensors_with_huge_dims_are_not_read(shape):
    # Found by benchmarks/fuzz.py: nothing bounded these dims, and reading made a row or a name per dim
    # (gigabytes for one small request). Such a tensor holds no values to change: it passes through.
    doc = {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": []}]}
    assert V2.read_strict(doc, AdapterOptions()) is None
    response = {"outputs": [{"name": "y", "shape": shape, "datatype": "FP32", "data": []}]}
    assert V2.predictions_strict(response, AdapterOptions()) is None


def test_empty_tensors_of_ordinary_width_are_still_read():
    doc = {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}]}
    parsed = V2.read_strict(doc, AdapterOptions())
    assert parsed is not None and parsed.table.n_rows == 0 and parsed.table.n_cols == 4
