"""KServe V1 / TF Serving REST: instances (lists, scalars, records, KServe's dict of lists), inputs (columnar)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from proxy.payload import MISSING, AdapterOptions, detect, get_adapter
from proxy.payload import mutate as M
from tests.payload import same

V1 = get_adapter("v1")
IRIS = AdapterOptions(feature_names=("sl", "sw", "pl", "pw"))

LISTS = {"signature_name": "serving_default", "instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
INPUTS_LIST = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
SCALARS = {"instances": [1.0, 2.0, 3.0]}
RECORDS = {"instances": [{"a": 1, "b": "x", "c": [1, 2]}, {"b": "y", "a": 2}], "parameters": {"p": 1}}
DICT_OF_LISTS = {"instances": [{"sepal_length": [5.1, 6.7], "sepal_width": [3.5, 3.0]}]}
TF_COLUMNAR = {"signature_name": "s", "inputs": {"a": [1, 2, 3], "b": [[1, 2], [3, 4], [5, 6]]}}


@pytest.mark.parametrize("path", [
    "/v1/models/iris:predict", "/v1/models/iris/versions/2:predict", "/v1/models/iris:explain",
    "/v1/models/m:predict?a",
])
def test_detect_by_path(path):
    assert detect(path, None) is V1


def test_detect_by_body():
    assert detect("/x", LISTS) is V1
    assert detect("/x", {"other": 1}) is None


@pytest.mark.parametrize(("doc", "layout"), [
    (LISTS, "v1.rows"), (INPUTS_LIST, "v1.rows"), (SCALARS, "v1.scalars"), (RECORDS, "v1.records"),
    (DICT_OF_LISTS, "v1.columns"), (TF_COLUMNAR, "v1.columns"),
])
def test_round_trip_unchanged(doc, layout):
    before = copy.deepcopy(doc)
    p = V1.read_strict(doc, IRIS)
    assert p is not None and p.layout == layout
    out = V1.write(p, p.table.copy())
    assert same(out, doc) and same(doc, before)


def test_list_rows_use_policy_names_when_they_fit():
    p = V1.read(LISTS, IRIS)
    assert p is not None and p.table.names == ["sl", "sw", "pl", "pw"] and not p.table.named
    p = V1.read(LISTS, AdapterOptions(feature_names=("x",)))
    assert p is not None and p.table.names == ["instances[0]", "instances[1]", "instances[2]", "instances[3]"]


def test_records_union_keys_with_missing_cells():
    p = V1.read(RECORDS)
    assert p is not None and p.table.names == ["a", "b", "c"] and p.table.named
    assert p.table.columns[2] == [[1, 2], MISSING]
    assert p.table.dtypes == ["number", "string", "mixed"]


def test_records_structural_writes():
    p = V1.read(RECORDS)
    assert p is not None
    rng = np.random.default_rng(0)
    out = V1.write(p, M.rename_feature(p.table, mapping={"a": "A"}, rng=rng).table)
    assert out["instances"] == [{"A": 1, "b": "x", "c": [1, 2]}, {"b": "y", "A": 2}]  # each row keeps its order
    assert list(out["instances"][1]) == ["b", "A"]
    out = V1.write(p, M.drop_feature(p.table, features=["b"], rng=rng).table)
    assert out["instances"] == [{"a": 1, "c": [1, 2]}, {"a": 2}]
    out = V1.write(p, M.reorder_features(p.table, rng=rng).table)
    assert [list(r) for r in out["instances"]] == [["c", "b", "a"], ["b", "a"]]
    out = V1.write(p, M.nan(p.table, features=["a"], rng=rng).table)
    assert out["instances"][1]["a"] != out["instances"][1]["a"]  # NaN (null on the wire)
    assert out["parameters"] == {"p": 1}


def test_list_rows_structural_writes():
    p = V1.read(LISTS, IRIS)
    assert p is not None
    rng = np.random.default_rng(0)
    out = V1.write(p, M.drop_feature(p.table, features=["sw"], rng=rng).table)
    assert out == {"signature_name": "serving_default", "instances": [[5.1, 1.4, 0.2], [6.7, 5.2, 2.3]]}
    assert not M.rename_feature(p.table, rng=rng).applicable
    out = V1.write(p, M.truncate_batch(p.table, fraction=0.5, rng=rng, where="tail").table)
    assert out["instances"] == [[5.1, 3.5, 1.4, 0.2]]


def test_scalars_become_lists_when_a_column_is_added():
    p = V1.read(SCALARS)
    assert p is not None and p.table.names == ["instances"]
    t = p.table.copy()
    t.names.append("z")
    t.columns.append([0, 0, 0])
    t.dtypes.append("number")
    t.col_origin.append(None)  # type: ignore[union-attr]
    assert V1.write(p, t)["instances"] == [[1.0, 0], [2.0, 0], [3.0, 0]]


def test_dict_of_lists_instance_is_a_dataframe():
    p = V1.read(DICT_OF_LISTS)
    assert p is not None and p.table.n_rows == 2 and p.table.names == ["sepal_length", "sepal_width"]
    m = M.truncate_batch(p.table, fraction=0.5, rng=np.random.default_rng(0), where="tail")
    assert V1.write(p, m.table) == {"instances": [{"sepal_length": [5.1], "sepal_width": [3.5]}]}


def test_tf_columnar_inputs():
    p = V1.read(TF_COLUMNAR)
    assert p is not None and p.table.n_rows == 3
    rng = np.random.default_rng(0)
    out = V1.write(p, M.rename_feature(p.table, features=["b"], suffix="_v2", rng=rng).table)
    assert out == {"signature_name": "s", "inputs": {"a": [1, 2, 3], "b_v2": [[1, 2], [3, 4], [5, 6]]}}


@pytest.mark.parametrize("doc", [
    {}, {"instances": []}, {"instances": {}}, {"instances": 3}, {"instances": [[1, 2], [3]]},
    {"instances": [[1], 2]}, {"instances": [{"a": 1}, [1]]}, {"instances": [1], "inputs": [1]},
    {"inputs": {"a": [1, 2], "b": [1]}}, {"inputs": {"a": 1}}, {"instances": [{}]}, "text", None,
])
def test_unparseable(doc):
    assert V1.read_strict(doc, AdapterOptions()) is None


# ------------------------------------------------------------------------------------------- predictions

@pytest.mark.parametrize(("doc", "expected"), [
    ({"predictions": [0, 2]}, {"predictions": [0, 2]}),
    ({"predictions": [[0.1], [0.9]]}, {"predictions": [0.1, 0.9]}),
    ({"predictions": [[0.1, 0.9], [0.8, 0.2]]}, {"predictions": [[0.1, 0.9], [0.8, 0.2]]}),
    ({"predictions": ["setosa", "virginica"]}, {"predictions": ["setosa", "virginica"]}),
    ({"predictions": [{"label": "a", "score": [0.3]}, {"label": "b", "score": [0.7]}]},
     {"label": ["a", "b"], "score": [0.3, 0.7]}),
    ({"outputs": {"scores": [[0.1, 0.9]], "classes": [1]}}, {"scores": [[0.1, 0.9]], "classes": [1]}),
    ({"outputs": [1.5, 2.5]}, {"outputs": [1.5, 2.5]}),
    ({"predictions": [], "explanations": []}, None),
    ({"error": "boom"}, None),
    ({"predictions": [[[1, 2]], [[3, 4]]]}, None),
])
def test_predictions(doc, expected):
    assert V1.predictions(doc) == expected
    if expected is not None:
        assert same(V1.write_predictions(doc, expected), doc)


def test_predictions_write_back_keeps_the_form():
    doc = {"predictions": [[0.1], [0.9]], "model": "m"}
    assert V1.write_predictions(doc, {"predictions": [0.2, 0.8]}) == {"predictions": [[0.2], [0.8]], "model": "m"}
    doc2 = {"predictions": [{"label": "a", "p": 0.5}, {"label": "b", "p": 0.5}]}
    assert V1.write_predictions(doc2, {"label": ["b", "a"]}) == {
        "predictions": [{"label": "b", "p": 0.5}, {"label": "a", "p": 0.5}]}
    assert V1.write_predictions(doc2, {"nope": [1, 2]}) is None
    assert V1.write_predictions(doc, {"predictions": [1]}) is None
    assert V1.predictions(doc2, AdapterOptions(output="p")) == {"p": [0.5, 0.5]}
