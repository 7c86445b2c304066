"""MLflow scoring server /invocations: dataframe_split, dataframe_records, instances, inputs."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from proxy.payload import AdapterOptions, detect, get_adapter
from proxy.payload import mutate as M
from tests.payload import same

MLF = get_adapter("mlflow")

SPLIT: dict[str, Any] = {
    "dataframe_split": {"columns": ["a", "b"], "index": [10, 11, 12], "data": [[1, 2], [3, 4], [5, 6]]},
    "params": {"temperature": 0.5},
}
SPLIT_NO_INDEX = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, "x"], [2.5, "y"]]}}
SPLIT_NO_COLUMNS = {"dataframe_split": {"data": [[1, 2], [3, 4]]}}
RECORDS = {"dataframe_records": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}
INSTANCES = {"instances": [{"a": "t1", "b": [1, 2, 3]}, {"a": "t2", "b": [4, 5, 6]}]}
INPUTS_DICT = {"inputs": {"a": [1, 3], "b": [2, 4]}}
INPUTS_LIST = {"inputs": [[1, 2], [3, 4]], "params": {}}


def test_detect():
    assert detect("/invocations", None) is MLF
    assert detect("/prefix/invocations?x", {}) is MLF
    assert detect("/", SPLIT) is MLF and detect("/", RECORDS) is MLF
    assert detect("/invocations", INSTANCES) is MLF  # the path wins over the body's keys


@pytest.mark.parametrize(("doc", "layout"), [
    (SPLIT, "mlflow.split"), (SPLIT_NO_INDEX, "mlflow.split"), (SPLIT_NO_COLUMNS, "mlflow.split"),
    (RECORDS, "mlflow.records"), (INSTANCES, "mlflow.records"), (INPUTS_DICT, "mlflow.columns"),
    (INPUTS_LIST, "mlflow.rows"),
])
def test_round_trip_unchanged(doc, layout):
    before = copy.deepcopy(doc)
    p = MLF.read_strict(doc, AdapterOptions())
    assert p is not None and p.layout == layout
    assert same(MLF.write(p, p.table.copy()), doc) and same(doc, before)


def test_split_names_and_types():
    p = MLF.read(SPLIT_NO_INDEX)
    assert p is not None and p.table.named and p.table.dtypes == ["number", "string"]
    p = MLF.read(SPLIT_NO_COLUMNS, AdapterOptions(feature_names=("f", "g")))
    assert p is not None and not p.table.named and p.table.names == ["f", "g"]


def test_split_truncate_trims_index_and_keeps_params():
    p = MLF.read(SPLIT)
    assert p is not None
    m = M.truncate_batch(p.table, fraction=1 / 3, rng=np.random.default_rng(3))
    assert m.changed == 1
    out = MLF.write(p, m.table)
    kept = [i for i, row in zip([10, 11, 12], SPLIT["dataframe_split"]["data"], strict=True)
            if row in out["dataframe_split"]["data"]]
    assert out["dataframe_split"]["index"] == kept and len(kept) == 2
    assert out["params"] == {"temperature": 0.5}


def test_split_structural_writes():
    p = MLF.read(SPLIT)
    assert p is not None
    rng = np.random.default_rng(0)
    out = MLF.write(p, M.rename_feature(p.table, mapping={"b": "B"}, rng=rng).table)
    assert out["dataframe_split"]["columns"] == ["a", "B"]
    out = MLF.write(p, M.drop_feature(p.table, features=["a"], rng=rng).table)
    assert out["dataframe_split"] == {"columns": ["b"], "index": [10, 11, 12], "data": [[2], [4], [6]]}
    out = MLF.write(p, M.reorder_features(p.table, rng=rng).table)
    assert out["dataframe_split"]["columns"] == ["b", "a"] and out["dataframe_split"]["data"][0] == [2, 1]


def test_records_with_tensor_cells():
    p = MLF.read(INSTANCES)
    assert p is not None
    m = M.type_swap(p.table, rng=np.random.default_rng(0))
    assert not m.applicable  # no scalar numbers: "a" is text, "b" holds lists
    out = MLF.write(p, M.drop_feature(p.table, features=["b"], rng=np.random.default_rng(0)).table)
    assert out == {"instances": [{"a": "t1"}, {"a": "t2"}]}


@pytest.mark.parametrize("doc", [
    {"dataframe_split": SPLIT["dataframe_split"], "instances": [[1]]},  # two format keys: MLflow says 400
    {"dataframe_split": []}, {"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}},
    {"dataframe_split": {"columns": ["a"], "data": [1]}}, {"dataframe_split": {"columns": [1], "data": [[1]]}},
    {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [1, 2]}},
    {"dataframe_records": [[1, 2]]}, {"dataframe_records": []}, {"dataframe_records": {"a": [1]}},
    {"params": {}}, {"messages": [{"role": "user", "content": "hi"}]}, [1, 2],
])
def test_unparseable(doc):
    assert MLF.read_strict(doc, AdapterOptions()) is None


def test_predictions():
    assert MLF.predictions({"predictions": [0, 2]}) == {"predictions": [0, 2]}
    assert MLF.predictions([0.5, 0.25]) == {"predictions": [0.5, 0.25]}  # MLflow 1.x: a bare list
    records = {"predictions": [{"label": 0, "p": 0.9}, {"label": 1, "p": 0.6}]}
    assert MLF.predictions(records) == {"label": [0, 1], "p": [0.9, 0.6]}
    assert MLF.write_predictions([0.5, 0.25], {"predictions": [1.0, 2.0]}) == [1.0, 2.0]
    assert MLF.write_predictions(records, {"p": [0.1, 0.2]}) == {
        "predictions": [{"label": 0, "p": 0.1}, {"label": 1, "p": 0.2}]}
    assert MLF.predictions({"error_code": "BAD_REQUEST", "message": "m"}) is None
