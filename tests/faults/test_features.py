"""Feature faults through the proxy: the upstream receives the changed payload, every other field intact."""

from __future__ import annotations

import gc
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, OVERRIDE_ENV, chaos_experiment

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
V2_COLUMNAR: dict[str, Any] = {
    "id": "req-1", "parameters": {"content_type": "pd"},
    "inputs": [{"name": n, "shape": [2], "datatype": "FP64", "data": [1.0 + j, 2.0 + j]} for j, n in enumerate(NAMES)],
    "outputs": [{"name": "predict"}],
}
V2_MATRIX = {"id": "m", "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                                     "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}
V1_DICTS = {"instances": [dict(zip(NAMES, [5.1, 3.5, 1.4, 0.2], strict=True))], "signature_name": "serving"}
MLFLOW_SPLIT = {"dataframe_split": {"columns": NAMES, "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
                "params": {"k": 1}}


async def _through(upstream, start_sidecar, fault: dict[str, Any], path: str, doc: Any,
                   headers: dict[str, str] = FORCE_CHAOS, payload: dict[str, Any] | None = None) -> Any:
    extra = chaos_experiment([fault])
    if payload is not None:
        extra["experiments"][0]["payload"] = payload
    sc = await start_sidecar(policy_from(upstream.url, extra), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{sc.proxy_port}{path}", data=json.dumps(doc), headers=headers) as r:
        seen = await r.json()
    assert seen["body_len"] == int(seen["headers"]["Content-Length"])
    return json.loads(seen["body"]), sc


async def test_shift_scales_every_value_of_the_v2_columnar_payload(upstream, start_sidecar):
    got, _ = await _through(upstream, start_sidecar, {"type": "shift", "scale": 2.0, "offset": 1.0},
                            "/v2/models/iris/infer", V2_COLUMNAR)
    assert [i["data"] for i in got["inputs"]] == [[2 * v + 1 for v in i["data"]] for i in V2_COLUMNAR["inputs"]]
    assert {k: got[k] for k in ("id", "parameters", "outputs")} == \
        {k: V2_COLUMNAR[k] for k in ("id", "parameters", "outputs")}


async def test_a_changed_request_leaves_no_reference_cycle_behind(upstream, start_sidecar):
    # An exchange and its parsed payload point at each other while the faults run; left for the cyclic GC,
    # every changed request kept its body, document and tables alive until a collection (and caused them).
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([{"type": "shift", "scale": 3.0}])),
                             env=OVERRIDE_ENV)
    raw = json.dumps(V2_COLUMNAR).encode()

    async def garbage_after(headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as s:
            gc.collect()
            gc.disable()
            try:
                for _ in range(40):
                    async with s.post(f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer", data=raw,
                                      headers=headers) as r:
                        assert r.status == 200
                        await r.read()
                return gc.collect()
            finally:
                gc.enable()

    untouched = await garbage_after(FORCE_CONTROL)
    changed = await garbage_after(FORCE_CHAOS)
    assert sc.metrics.faults.labels("e1", "shift").value == 40
    assert changed < untouched + 40, (changed, untouched)


async def test_the_control_cohort_payload_arrives_byte_for_byte(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([{"type": "shift", "scale": 3.0}])),
                             env=OVERRIDE_ENV)
    raw = json.dumps(V2_COLUMNAR, indent=1).encode()
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer", data=raw, headers=FORCE_CONTROL) as r:
        assert (await r.json())["body"].encode("latin-1") == raw


@pytest.mark.parametrize(("fault", "check"), [
    ({"type": "nan", "features": ["sepal_width"]}, lambda d: d["instances"][0]["sepal_width"] is None),
    ({"type": "drop_feature", "features": ["petal_width"]}, lambda d: "petal_width" not in d["instances"][0]),
    ({"type": "rename_feature", "mapping": {"sepal_length": "sepal_len"}},
     lambda d: "sepal_len" in d["instances"][0] and "sepal_length" not in d["instances"][0]),
    ({"type": "type_swap", "features": ["petal_length"]}, lambda d: d["instances"][0]["petal_length"] == "1.4"),
    ({"type": "default", "values": {"sepal_length": 0.0}}, lambda d: d["instances"][0]["sepal_length"] == 0.0),
    ({"type": "reorder_features"}, lambda d: list(d["instances"][0]) == NAMES[::-1]),
    ({"type": "out_of_range", "features": ["sepal_width"]}, lambda d: abs(d["instances"][0]["sepal_width"]) > 1e5),
])
async def test_each_feature_fault_changes_a_v1_dict_row_as_it_says(upstream, start_sidecar, fault, check):
    got, _ = await _through(upstream, start_sidecar, fault, "/v1/models/iris:predict", V1_DICTS)
    assert check(got), got
    assert got["signature_name"] == "serving"


async def test_the_matrix_layout_drops_a_named_column_and_fixes_its_shape(upstream, start_sidecar):
    got, _ = await _through(upstream, start_sidecar, {"type": "drop_feature", "features": ["petal_width"]},
                            "/v2/models/iris/infer", V2_MATRIX, payload={"features": NAMES})
    assert got["inputs"][0]["shape"] == [2, 3]
    assert got["inputs"][0]["data"] == [[5.1, 3.5, 1.4], [6.7, 3.0, 5.2]]


async def test_truncate_batch_drops_rows_of_an_mlflow_split_frame(upstream, start_sidecar):
    got, _ = await _through(upstream, start_sidecar, {"type": "truncate_batch", "fraction": 0.5, "where": "tail"},
                            "/invocations", MLFLOW_SPLIT)
    assert got["dataframe_split"]["data"] == [[5.1, 3.5, 1.4, 0.2]]
    assert got["params"] == {"k": 1}


async def test_the_nan_token_is_written_only_when_the_policy_asks(upstream, start_sidecar):
    got, _ = await _through(upstream, start_sidecar, {"type": "nan", "features": ["sepal_width"]},
                            "/v1/models/iris:predict", V1_DICTS, payload={"nan_token": True})
    assert got["instances"][0]["sepal_width"] != got["instances"][0]["sepal_width"]  # NaN


async def test_a_body_that_is_not_json_passes_untouched_and_is_counted(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([{"type": "shift", "offset": 1.0}])),
                             env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer", data=b"\x00not json",
                   headers=FORCE_CHAOS) as r:
        assert r.status == 200 and (await r.json())["body"] == "\x00not json"
    assert sc.metrics.registry.get_sample_value(
        "mlchaos_payload_unparsed_total", {"experiment": "e1", "cohort": "chaos", "direction": "request"}) == 1


async def test_stale_sends_what_the_same_user_sent_before(upstream, start_sidecar):
    extra = chaos_experiment([{"type": "stale", "age_requests": 1}])
    extra["experiments"][0]["sticky_key"] = "header:x-user-id"
    sc = await start_sidecar(policy_from(upstream.url, extra), env=OVERRIDE_ENV)
    url = f"http://127.0.0.1:{sc.proxy_port}/v1/models/iris:predict"
    sent = []
    async with aiohttp.ClientSession() as s:
        for v in (1.0, 2.0, 3.0):
            doc = {"instances": [dict.fromkeys(NAMES, v)]}
            async with s.post(url, data=json.dumps(doc), headers={**FORCE_CHAOS, "x-user-id": "u1"}) as r:
                sent.append(json.loads((await r.json())["body"])["instances"][0]["sepal_length"])
    assert sent == [1.0, 1.0, 2.0]  # the first has no history yet; then each gets the previous request's


V2_ANSWER: dict[str, Any] = {"model_name": "iris", "model_version": "1", "id": "r",
             "outputs": [{"name": "label", "shape": [4], "datatype": "INT64", "data": [0, 1, 2, 1]},
                         {"name": "probabilities", "shape": [4, 3], "datatype": "FP32",
                          "data": [0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.8, 0.2, 0.6, 0.2]}]}


async def _model_answering(start_upstream, answer: Any):
    from aiohttp import web

    seen: list[str] = []

    async def model(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response(answer)

    up = await start_upstream({"/v2/models/{tail:.*}": model})
    return up, seen


async def test_perturb_predictions_flips_every_label_at_rate_one(start_upstream, start_sidecar):
    up, _ = await _model_answering(start_upstream, V2_ANSWER)
    fault = {"type": "perturb_predictions", "flip_rate": 1.0, "classes": [0, 1, 2]}
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer", json={}, headers=FORCE_CHAOS) as r:
        got = await r.json(content_type=None)
    labels = got["outputs"][0]["data"]
    assert all(a != b for a, b in zip(labels, V2_ANSWER["outputs"][0]["data"], strict=True))
    assert got["model_name"] == "iris" and got["id"] == "r"


async def test_patch_rewrites_the_answers_model_version(start_upstream, start_sidecar):
    up, _ = await _model_answering(start_upstream, V2_ANSWER)
    fault = {"type": "patch", "target": "response",
             "operations": [{"op": "replace", "path": "/model_version", "value": "7"}]}
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer", json={}, headers=FORCE_CHAOS) as r:
        got = await r.json(content_type=None)
    assert got["model_version"] == "7" and got["outputs"] == V2_ANSWER["outputs"]


async def test_wrong_version_rewrites_the_path_to_another_version(start_upstream, start_sidecar):
    up, seen = await _model_answering(start_upstream, V2_ANSWER)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "wrong_version", "version": "2"}])),
                             env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        for path in ("/v2/models/iris/infer?x=1", "/v2/models/iris/versions/1/infer"):
            async with s.post(f"http://127.0.0.1:{sc.proxy_port}{path}", json={}, headers=FORCE_CHAOS) as r:
                assert r.status == 200
    assert seen == ["/v2/models/iris/versions/2/infer?x=1", "/v2/models/iris/versions/2/infer"]


@pytest.mark.parametrize("fault", [
    {"type": "patch", "operations": [{"op": "replace"}]},
    {"type": "patch", "operations": [{"op": "jump", "path": "/a"}]},
    {"type": "wrong_version"},
    {"type": "perturb_predictions"},
    {"type": "shift"},
])
def test_payload_faults_refuse_settings_that_would_do_nothing_or_cannot_work(fault):
    from proxy.policy import PolicyError, compile_policy

    with pytest.raises(PolicyError) as err:
        compile_policy({"upstream": "http://127.0.0.1:1", "experiments": [{"name": "e", "chaos": 1,
                                                                             "faults": [fault]}]})
    assert all(p.startswith("experiments[0].faults[0]") for p, _ in err.value.problems), err.value.problems


@pytest.mark.parametrize("fault", [{"type": "shift", "scale": 2.0, "offset": 1.0}, {"type": "nan", "fraction": 1.0}])
async def test_a_v2_binary_tensor_request_is_decoded_changed_and_encoded_again(upstream, start_sidecar, fault):
    import numpy as np
    import tritonclient.http as httpclient

    from proxy.payload import inline_binary, split_binary

    cols = {n: np.array([1.5 + j, 2.5 + j], dtype=np.float32) for j, n in enumerate(NAMES)}
    inputs = []
    for name, values in cols.items():
        inputs.append(httpclient.InferInput(name, [2], "FP32"))
        inputs[-1].set_data_from_numpy(values, binary_data=True)
    inputs.append(httpclient.InferInput("ids", [2], "INT64"))
    inputs[-1].set_data_from_numpy(np.array([7, 8], dtype=np.int64), binary_data=False)
    body, head_length = httpclient.InferenceServerClient.generate_request_body(inputs)  # tritonclient's encoder
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([{**fault, "features": NAMES}])),
                             env=OVERRIDE_ENV)
    headers = {"Inference-Header-Content-Length": str(head_length), "Content-Type": "application/octet-stream"}
    url = f"http://127.0.0.1:{sc.proxy_port}/v2/models/iris/infer"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body, headers={**headers, **FORCE_CHAOS}) as r:
            seen = await r.json()
        async with s.post(url, data=body, headers={**headers, **FORCE_CONTROL}) as r:
            control = await r.json()
    assert control["body"].encode("latin-1") == body  # control: byte for byte

    sent = seen["body"].encode("latin-1")
    n = int(seen["headers"]["Inference-Header-Content-Length"])
    assert seen["body_len"] == int(seen["headers"]["Content-Length"]) == len(sent)
    split = split_binary(sent, n)
    assert split is not None
    doc = inline_binary(*split)
    assert doc is not None
    tensors = {t["name"]: t for t in doc["inputs"]}
    for name, values in cols.items():
        assert tensors[name]["parameters"]["binary_data_size"] == values.nbytes  # still binary, in order
        got = np.asarray(tensors[name]["data"], dtype=np.float32)
        if fault["type"] == "shift":
            assert np.allclose(got, values * 2 + 1), name
        else:
            assert np.isnan(got).all(), name
    assert tensors["ids"]["data"] == [7, 8] and "binary_data_size" not in tensors["ids"].get("parameters", {})
