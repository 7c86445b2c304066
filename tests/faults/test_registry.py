"""The registry faults on MLflow's load sequence, against a registry in memory (tests/faults/registry_fake.py).

The property at the heart of ``registry_version``: every call a client makes while loading ``models:/NAME@ALIAS``
(or ``/latest``) agrees on one version, the served one, down to the files it downloads; and a client left alone
sees the registry as it is.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from proxy.declare.errors import Errors
from proxy.faults import parse_fault
from proxy.faults.base import Fault
from proxy.payload.adapters import ADAPTERS, detect
from proxy.payload.adapters.mlflow_registry import (
    ARTIFACT,
    ARTIFACT_LIST,
    artifact_prefix,
    classify,
    drop_blocks,
    top_blocks,
    with_query,
)
from tests.faults.registry_fake import ARTIFACTS, ROOT, FakeRegistry, mlmodel, through


def fault(**raw: Any) -> Fault:
    errors = Errors()
    made = parse_fault(raw, "f", errors)
    assert made is not None, errors.problems
    return made


def load(faults: list[Fault], reg: FakeRegistry, alias: str | None = "champion", client: bytes | None = b"c1",
         via_source: bool = False) -> dict[str, Any]:
    """What MLflow 3's client sees loading models:/NAME@ALIAS (or NAME/latest with alias None): the calls of
    ModelsArtifactRepository and pyfunc.load_model, in order. ``via_source`` derives the files from the
    resolved record's source (models:/m-...), as a client that downloads ``mv.source`` does."""
    if alias is not None:
        resolved = through(faults, reg, "GET", f"{ROOT}/registered-models/alias?name={reg.name}&alias={alias}",
                           client=client).json()["model_version"]
        version = resolved["version"]
    else:
        latest = through(faults, reg, "POST", f"{ROOT}/registered-models/get-latest-versions",
                         json.dumps({"name": reg.name}).encode(), client=client).json()["model_versions"]
        resolved = latest[0]
        version = str(max(int(v["version"]) for v in latest))
    model = through(faults, reg, "GET", f"{ROOT}/registered-models/get?name={reg.name}", client=client).json()
    if via_source:
        prefix = f"0/models/{resolved['source'].removeprefix('models:/')}/artifacts"
    else:
        uri = through(faults, reg, "GET", f"{ROOT}/model-versions/get-download-uri?name={reg.name}&version={version}",
                      client=client).json()["artifact_uri"]
        found = artifact_prefix(uri)
        assert found is not None
        prefix = found
    listing = through(faults, reg, "GET", with_query(ARTIFACTS, path=prefix), client=client).json()
    files = {f["path"]: through(faults, reg, "GET", f"{ARTIFACTS}/{prefix}/{f['path']}", client=client).body
             for f in listing["files"]}
    get = through(faults, reg, "GET", f"{ROOT}/model-versions/get?name={reg.name}&version={version}",
                  client=client).json()["model_version"]
    return {"version": version, "resolved": resolved, "model": model["registered_model"], "files": files,
            "get": get, "run_id": yaml.safe_load(files["MLmodel"])["run_id"]}


# -- the adapter
def test_the_registry_paths_are_detected_and_other_formats_keep_theirs():
    def name(path: str) -> str | None:
        adapter = detect(path, None)
        return adapter.name if adapter is not None else None

    assert name(f"{ROOT}/registered-models/alias") == "mlflow_registry"
    assert name(f"{ARTIFACTS}/0/models/m-1/artifacts/MLmodel") == "mlflow_registry"
    assert name("/invocations") == "mlflow"
    assert detect("/api/2.0/mlflow/runs/get", None) is None
    assert ADAPTERS["mlflow_registry"].read({"model_version": {}}, direction="response") is None


@pytest.mark.parametrize(("method", "target", "body", "want"), [
    ("GET", f"{ROOT}/registered-models/alias?name=fraud&alias=champion", None, ("alias", "fraud", None, "champion")),
    ("GET", f"{ROOT}/registered-models/get?name=fraud", None, ("model", "fraud", None, None)),
    ("POST", f"{ROOT}/registered-models/get-latest-versions", b'{"name": "fraud", "stages": ["None"]}',
     ("latest", "fraud", None, None)),
    ("GET", f"{ROOT}/model-versions/get?name=fraud&version=3", None, ("version", "fraud", "3", None)),
    ("GET", f"{ROOT}/model-versions/get-download-uri?name=a%20b&version=1", None, ("download_uri", "a b", "1", None)),
    ("POST", f"{ROOT}/model-versions/create", b"{not json", ("other", None, None, None)),
])
def test_classify_names_the_call(method, target, body, want):
    call = classify(method, target, body)
    assert call is not None and (call.kind, call.name, call.version, call.alias) == want


def test_classify_artifact_paths():
    listing = classify("GET", f"{ARTIFACTS}?path=0%2Fmodels%2Fm-1%2Fartifacts")
    assert listing is not None and (listing.kind, listing.path) == (ARTIFACT_LIST, "0/models/m-1/artifacts")
    file = classify("GET", f"{ARTIFACTS}/0/models/m-1/artifacts/my%20model.pkl")
    assert file is not None and (file.kind, file.path) == (ARTIFACT, "0/models/m-1/artifacts/my model.pkl")
    assert classify("POST", "/invocations") is None
    assert artifact_prefix("mlflow-artifacts://host:5000/0/x/artifacts") == "0/x/artifacts"
    assert artifact_prefix("s3://bucket/0/x") is None


def test_drop_blocks_cuts_top_level_keys_and_keeps_every_other_byte():
    text = mlmodel(2, signed=True)
    assert [k for k, _, _ in top_blocks(text)] == [
        "artifact_path", "flavors", "model_id", "run_id", "saved_input_example_info", "signature", "utc_time_created"]
    out = drop_blocks(text, {"signature", "saved_input_example_info"})
    assert yaml.safe_load(out) == {k: v for k, v in yaml.safe_load(text).items()
                                   if k not in ("signature", "saved_input_example_info")}
    assert drop_blocks(out, {"signature"}) is out


# -- registry_version: the property
@st.composite
def registries(draw: st.DrawFn) -> tuple[FakeRegistry, dict[str, Any], int]:
    n = draw(st.integers(1, 6))
    champion = draw(st.integers(1, n))
    aliases = {"champion": champion}
    if draw(st.booleans()):
        aliases["challenger"] = draw(st.integers(1, n))
    if draw(st.booleans()):
        raw: dict[str, Any] = {"version": str(draw(st.integers(1, n)))}
    else:
        raw = {"offset": draw(st.integers(-3, -1))}
    return FakeRegistry(n, aliases), raw, champion


def expected(raw: dict[str, Any], true: int) -> int:
    if "version" in raw:
        return int(raw["version"])
    return true + raw["offset"] if true + raw["offset"] >= 1 else true


@given(case=registries(), latest=st.booleans(), via_source=st.booleans(), rounds=st.integers(1, 2))
def test_every_call_of_a_load_agrees_on_the_served_version(case, latest, via_source, rounds):
    reg, raw, champion = case
    f = fault(type="registry_version", **raw)
    true = reg.n if latest else champion
    want = expected(raw, true)
    for i in range(rounds + via_source):  # later loads find the served version's record already learned
        # A client that takes the files from the resolved record's source follows the served version's files
        # once the fault has seen that version's record (the first answer is the true record renumbered).
        seen = load([f], reg, alias=None if latest else "champion", via_source=via_source and i > 0)
        assert seen["version"] == str(want)
        assert seen["files"]["MLmodel"] == reg.files(want)["MLmodel"]
        assert seen["run_id"] == f"run{want:04d}"
        assert seen["get"]["version"] == str(want) and seen["get"]["run_id"] == f"run{want:04d}"
        model = seen["model"]
        assert [v["version"] for v in model["latest_versions"]] == [str(expected(raw, reg.n))]
        aliases = {a["alias"]: a["version"] for a in model["aliases"]}
        assert aliases["champion"] == str(expected(raw, champion))
        if not latest:
            assert "champion" in seen["resolved"]["aliases"] and "champion" in seen["get"]["aliases"]
            if "version" in raw or i > 0:
                # A fixed version is asked of the registry at once; an offset once the alias is known.
                assert seen["resolved"]["run_id"] == f"run{want:04d}"
    if not latest:
        # Once learned, the record served is the served version's own, not the true one renumbered.
        again = load([f], reg, via_source=via_source)["resolved"]
        assert {k: v for k, v in again.items() if k != "aliases"} == \
            {k: v for k, v in reg.record(want).items() if k != "aliases"}


@given(case=registries())
def test_a_client_outside_the_cohort_and_a_model_outside_models_see_the_registry_as_it_is(case):
    reg, raw, champion = case
    plain = load([], reg)
    assert plain["version"] == str(champion) and plain["run_id"] == f"run{champion:04d}"
    other = fault(type="registry_version", models=["other*"], **raw)
    assert load([other], reg) == plain


def test_the_true_version_loses_the_alias_and_its_download_uri_and_files_lead_to_the_served_one():
    reg = FakeRegistry(3, {"champion": 3})
    f = fault(type="registry_version", offset=-1)
    assert load([f], reg)["version"] == "2"
    get3 = through([f], reg, "GET", f"{ROOT}/model-versions/get?name=fraud&version=3").json()["model_version"]
    assert "aliases" not in get3
    uri3 = through([f], reg, "GET", f"{ROOT}/model-versions/get-download-uri?name=fraud&version=3")
    assert uri3.json()["artifact_uri"] == "mlflow-artifacts:/0/models/m-0002/artifacts"
    file3 = through([f], reg, "GET", f"{ARTIFACTS}/0/models/m-0003/artifacts/MLmodel")
    assert file3.upstream_target == f"{ARTIFACTS}/0/models/m-0002/artifacts/MLmodel"
    # Another client (another sticky key value) was told nothing: its requests by number are left alone.
    assert through([f], reg, "GET", f"{ARTIFACTS}/0/models/m-0003/artifacts/MLmodel", client=b"c2").body == \
        reg.files(3)["MLmodel"]


def test_no_other_version_means_no_rewrite_and_no_audit(caplog):
    reg = FakeRegistry(2, {"champion": 1})
    with caplog.at_level(logging.INFO, logger="mlchaos"):
        assert load([fault(type="registry_version", offset=-1)], reg, alias="champion")["version"] == "1"
    assert not [r for r in caplog.records if r.getMessage() == "registry_fault" and r.fields["call"] == "alias"]


def test_each_rewrite_logs_the_model_and_both_versions(caplog):
    reg = FakeRegistry(2, {"champion": 2})
    with caplog.at_level(logging.INFO, logger="mlchaos"):
        load([fault(type="registry_version", version="1")], reg)
    lines = [r.fields for r in caplog.records if r.getMessage() == "registry_fault"]
    # The first alias lookup with a fixed version asks the registry for that version straight away (the
    # alias's true version is not known yet); the registered model's answer, next, names it.
    assert {"fault": "registry_version", "call": "alias", "model": "fraud", "asked": None, "served": "1",
            "alias": "champion"} in lines
    assert {"fault": "registry_version", "call": "model", "model": "fraud", "asked": "2", "served": "1",
            "alias": "champion"} in lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlchaos"):
        through([fault(type="registry_version", offset=-1)], reg, "GET",
                f"{ROOT}/registered-models/alias?name=fraud&alias=champion")
    assert [r.fields for r in caplog.records] == [{"fault": "registry_version", "call": "alias", "model": "fraud",
                                                   "asked": "2", "served": "1", "alias": "champion"}]


def test_aliases_and_latest_limit_what_changes():
    reg = FakeRegistry(3, {"champion": 3, "challenger": 2})
    f = fault(type="registry_version", version="1", aliases=["challenger"], latest=False)
    assert load([f], reg, alias="champion")["version"] == "3"
    assert load([f], reg, alias="challenger")["version"] == "1"
    assert load([f], reg, alias=None)["version"] == "3"


@pytest.mark.parametrize(("raw", "problem"), [
    ({}, "exactly one of version and offset"),
    ({"version": "1", "offset": -1}, "exactly one of version and offset"),
    ({"version": "v1"}, "a registry version is a number"),
    ({"offset": 0}, "0 is the true version"),
])
def test_registry_version_refuses_a_policy_that_says_nothing_or_too_much(raw, problem):
    errors = Errors()
    assert parse_fault({"type": "registry_version", **raw}, "f", errors) is None
    assert problem in str(errors.problems)


# -- strip_signature, scramble_metadata, corrupt_artifact
def test_strip_signature_removes_schema_and_example_and_fixes_the_etag():
    reg = FakeRegistry(2, {"champion": 2}, signed=(2,))
    answer = through([fault(type="strip_signature")], reg, "GET", f"{ARTIFACTS}/{reg.prefix(2)}/MLmodel")
    doc = yaml.safe_load(answer.body)
    assert "signature" not in doc and "saved_input_example_info" not in doc
    assert doc["run_id"] == "run0002" and doc["flavors"] == yaml.safe_load(reg.files(2)["MLmodel"])["flavors"]
    direct = FakeRegistry(2, {}, signed=(2,)).answer("GET", f"{ARTIFACTS}/{reg.prefix(2)}/MLmodel", None)
    assert answer.headers["etag"] != dict(direct[1])[b"etag"].decode()
    only_example = through([fault(type="strip_signature", remove=["input_example"])], reg, "GET",
                           f"{ARTIFACTS}/{reg.prefix(2)}/MLmodel")
    assert "signature" in yaml.safe_load(only_example.body)
    # A file without them, or another file, passes as it came.
    assert through([fault(type="strip_signature")], reg, "GET", f"{ARTIFACTS}/{reg.prefix(1)}/MLmodel").body == \
        reg.files(1)["MLmodel"]


@pytest.mark.parametrize("mode", ["remove", "scramble"])
def test_scramble_metadata_changes_every_record_and_the_mlmodel_file(mode):
    reg = FakeRegistry(2, {"champion": 2})
    f = fault(type="scramble_metadata", what=["tags", "description", "run_id", "flavors"], mode=mode)
    rec = through([f], reg, "GET", f"{ROOT}/registered-models/alias?name=fraud&alias=champion").json()["model_version"]
    true = reg.record(2)
    for key in ("tags", "description", "run_id"):
        assert rec.get(key) != true[key]
        assert (key in rec) == (mode == "scramble")
    if mode == "scramble":
        assert sorted(t["value"] for t in rec["tags"]) == sorted(t["value"] for t in true["tags"])
    doc = yaml.safe_load(through([f], reg, "GET", f"{ARTIFACTS}/{reg.prefix(2)}/MLmodel").body)
    assert "python_function" not in (doc.get("flavors") or {})
    assert doc.get("run_id") != "run0002"


@pytest.mark.parametrize("read_size", [1, 7, 1000, 100_000])
def test_corrupt_artifact_flips_bytes_in_any_chunking_and_keeps_the_length(read_size):
    reg = FakeRegistry(1, {})
    data = reg.files(1)["model.pkl"]
    out = through([fault(type="corrupt_artifact", count=5)], reg, "GET", f"{ARTIFACTS}/{reg.prefix(1)}/model.pkl",
                  read_size=read_size)
    assert len(out.body) == len(data) and "etag" not in out.headers
    flipped = [i for i, (a, b) in enumerate(zip(out.body, data, strict=True)) if a != b]
    assert len(flipped) == 5 and flipped[0] == 0 and all(out.body[i] == data[i] ^ 0xFF for i in flipped)


@pytest.mark.parametrize("read_size", [1, 333, 100_000])
def test_corrupt_artifact_truncates_to_the_share_kept(read_size):
    reg = FakeRegistry(1, {})
    data = reg.files(1)["model.pkl"]
    out = through([fault(type="corrupt_artifact", mode="truncate", keep=0.25)], reg, "GET",
                  f"{ARTIFACTS}/{reg.prefix(1)}/model.pkl", read_size=read_size)
    assert out.body == data[: int(len(data) * 0.25)]
    # MLmodel is not a model file: left alone.
    assert through([fault(type="corrupt_artifact")], reg, "GET", f"{ARTIFACTS}/{reg.prefix(1)}/MLmodel").body == \
        reg.files(1)["MLmodel"]


def test_abort_answers_in_the_registrys_error_shape():
    f = fault(type="abort", status=404, error_code="RESOURCE_DOES_NOT_EXIST", message="no such model")
    out = through([f], FakeRegistry(1, {}), "GET", f"{ROOT}/registered-models/get?name=fraud")
    assert out.status == 404 and out.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such model"}
    unavailable = fault(type="abort", error_code="TEMPORARILY_UNAVAILABLE", retry_after=1)
    out = through([unavailable], FakeRegistry(1, {}), "GET", f"{ROOT}/registered-models/get?name=fraud")
    assert out.reply is not None and ("retry-after", "1") in out.reply.headers
    assert out.json()["message"] == "Service Unavailable"
    errors = Errors()
    assert parse_fault({"type": "abort", "body": "x", "error_code": "E"}, "f", errors) is None
    assert parse_fault({"type": "abort", "message": "x"}, "g", errors) is None
    assert len(errors.problems) == 2
