"""Generic JSON: features and predictions located by RFC 6901 pointers from the policy."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from proxy.payload import AdapterOptions, detect, get_adapter
from proxy.payload import mutate as M
from tests.payload import same

GEN = get_adapter("generic")

DOC: dict[str, Any] = {
    "meta": {"user": "u1"},
    "payload": {
        "rows": [[1, 2], [3, 4]],
        "records": [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}],
        "cols": {"x": [1, 2], "y": [3, 4]},
        "scalars": [0.5, 0.25],
        "a/b": {"~c": [[7], [8]]},
    },
    "result": {"scores": [[0.9, 0.1], [0.2, 0.8]], "labels": ["a", "b"]},
}


@pytest.mark.parametrize(("pointer", "layout"), [
    ("/payload/rows", "generic.rows"), ("/payload/records", "generic.records"),
    ("/payload/cols", "generic.columns"), ("/payload/scalars", "generic.scalars"),
    ("/payload/a~1b/~0c", "generic.rows"),
])
def test_round_trip_unchanged(pointer, layout):
    before = copy.deepcopy(DOC)
    opts = AdapterOptions(features_pointer=pointer)
    p = GEN.read_strict(DOC, opts)
    assert p is not None and p.layout == layout
    assert same(GEN.write(p, p.table.copy(), opts), DOC) and same(DOC, before)


def test_only_the_pointed_value_changes():
    opts = AdapterOptions(features_pointer="/payload/records")
    p = GEN.read(DOC, opts)
    assert p is not None and p.table.names == ["x", "y"]
    out = GEN.write(p, M.rename_feature(p.table, mapping={"x": "X"}, rng=np.random.default_rng(0)).table, opts)
    assert out["payload"]["records"] == [{"X": 1, "y": "a"}, {"X": 2, "y": "b"}]
    out["payload"]["records"] = DOC["payload"]["records"]
    assert same(out, DOC)


def test_rows_take_policy_names():
    opts = AdapterOptions(features_pointer="/payload/rows", feature_names=("f", "g"))
    p = GEN.read(DOC, opts)
    assert p is not None and p.table.names == ["f", "g"] and not p.table.named


@pytest.mark.parametrize("pointer", [None, "/nope", "payload", "/payload/rows/9", "/meta", "/meta/user", "/x~2"])
def test_unreadable_pointers(pointer):
    assert GEN.read_strict(DOC, AdapterOptions(features_pointer=pointer)) is None


def test_detect_only_when_configured():
    assert detect("/anything", DOC) is None
    assert detect("/v2/models/m/infer", DOC, options=AdapterOptions(features_pointer="/payload/rows")) is GEN
    assert not GEN.matches("/x", DOC)


def test_predictions():
    opts = AdapterOptions(predictions_pointer="/result")
    preds = GEN.predictions(DOC, opts)
    assert preds == {"scores": [[0.9, 0.1], [0.2, 0.8]], "labels": ["a", "b"]}
    out = GEN.write_predictions(DOC, {"labels": ["b", "a"]}, opts)
    assert out is not None
    assert out["result"] == {"scores": [[0.9, 0.1], [0.2, 0.8]], "labels": ["b", "a"]}
    assert GEN.predictions(DOC, AdapterOptions(predictions_pointer="/result", output="labels")) == {
        "labels": ["a", "b"]}
    list_opts = AdapterOptions(predictions_pointer="/result/labels")
    assert GEN.predictions(DOC, list_opts) == {"labels": ["a", "b"]}
    out = GEN.write_predictions(DOC, {"labels": ["z", "z"]}, list_opts)
    assert out is not None and out["result"]["labels"] == ["z", "z"]
    assert GEN.predictions(DOC, AdapterOptions()) is None
    assert GEN.predictions(DOC, AdapterOptions(predictions_pointer="/missing")) is None
    assert GEN.write_predictions(DOC, {"other": [1, 2]}, opts) is None
