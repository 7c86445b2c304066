"""The real Feast feature server behind mlchaos, with Feast's own SDK as the client.

One `feast serve` (a repo this module writes: SQLite online store, parquet of harness.DRIVERS), one mlchaos in
front of it with one disabled experiment per fault, sticky on the request's first driver
(``sticky_key: entity:driver_id``), and the SDK in the Feast venv asking either the server or mlchaos. A test
starts its experiment through the admin API and asks for a driver that hashes into the cohort it wants; what
the SDK returns (``to_dict()`` and the statuses behind it) or raises is compared with a direct call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from proxy.cohort import bucket_of
from tests.feast import harness
from tests.feast.harness import DRIVERS, UNKNOWN, VIEW, FeastServer, Mlchaos, SdkClient
from tests.servers.harness import post_json, request

pytestmark = pytest.mark.slow

TOKEN = "feast-through-mlchaos"
REFS = [f"{VIEW}:{f}" for f in harness.FEATURES]
FAULTS: dict[str, dict[str, Any]] = {
    "nan": {"type": "nan", "target": "response", "features": ["conv_rate"]},
    "default": {"type": "default", "target": "response", "values": {"conv_rate": 0.5}},
    "shift": {"type": "shift", "target": "response", "features": ["conv_rate"], "scale": 2.0},
    "out_of_range": {"type": "out_of_range", "target": "response", "features": ["acc_rate"], "sign": "+"},
    "drop_feature": {"type": "drop_feature", "target": "response", "features": ["city"]},
    "rename_feature": {"type": "rename_feature", "target": "response", "mapping": {"conv_rate": "conv_rate_v2"}},
    "stale": {"type": "stale", "target": "response", "features": ["conv_rate"], "age": "1h",
              "outside_max_age": True},
    "not_found": {"type": "not_found", "by": "rows"},
    "misalign_rotate": {"type": "misalign", "mode": "rotate", "features": ["conv_rate", "acc_rate"]},
    "misalign_drop": {"type": "misalign", "mode": "drop_name", "features": ["conv_rate"]},
    "abort": {"type": "abort", "status": 503},
    "delay": {"type": "delay", "duration": "500ms"},
    "stall": {"type": "stall", "cap": "300ms", "then": "close"},
    "drop": {"type": "drop", "mode": "reset"},
    "feast_404": {"type": "feast_error", "exception": "FeatureViewNotFoundException",
                  "message": "Feature view driver_hourly_stats does not exist in project mlchaos_test"},
    "feast_500": {"type": "feast_error", "message": "database is locked"},
}


def _experiment(name: str, fault: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "chaos": 25, "control": 25, "enabled": False, "sticky_key": "entity:driver_id",
            "faults": [fault], "kill_switch": {"enabled": False}, "reveal": {"cohort": True, "fault": True}}


def driver_in(experiment: str, cohort: str) -> int:
    """A known driver whose requests land in ``cohort`` of ``experiment`` (the public hash of its id)."""
    for d in sorted(DRIVERS):
        b = bucket_of(experiment.encode()[:64], str(d).encode())
        if (b < 2500) == (cohort == "chaos") and (2500 <= b < 5000) == (cohort == "control"):
            return d
    raise AssertionError(f"no driver in {cohort} of {experiment}")


@pytest.fixture(scope="module")
def mlchaos(feast_server: FeastServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mlchaos]:
    proxy = Mlchaos(feast_server.url, [_experiment(n, f) for n, f in FAULTS.items()],
                    tmp_path_factory.mktemp("mlchaos"), TOKEN)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def repos(feast_server: FeastServer, mlchaos: Mlchaos, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("clients")
    return (harness.client_repo(base / "direct", feast_server, feast_server.url),
            harness.client_repo(base / "through", feast_server, mlchaos.url))


@contextmanager
def running(proxy: Mlchaos, name: str) -> Iterator[None]:
    proxy.start(name)
    try:
        yield
    finally:
        proxy.stop_experiment(name)


def ask(sdk: SdkClient, repo: Path, first: int, **kw: Any) -> dict[str, Any]:
    rows = [{"driver_id": first}, {"driver_id": 1001 if first != 1001 else 1002}, {"driver_id": UNKNOWN}]
    return sdk.get(repo, entity_rows=rows, features=kw.pop("features", REFS), **kw)


def both(sdk: SdkClient, repos: tuple[Path, Path], proxy: Mlchaos, name: str,
         cohort: str = "chaos") -> tuple[dict[str, Any], dict[str, Any]]:
    """The SDK's answer from the server and through mlchaos, for a driver of ``cohort``, while ``name`` runs."""
    driver = driver_in(name, cohort)
    direct = ask(sdk, repos[0], driver)
    with running(proxy, name):
        through = ask(sdk, repos[1], driver)
    assert "ok" in direct, direct
    return direct, through


# -- untouched: control, unassigned, and no experiment ----------------------------------------------------


def test_control_and_unassigned_drivers_get_what_feast_answers(sdk, repos, mlchaos):
    for cohort in ("control", "none"):
        for name in ("not_found", "misalign_rotate", "abort"):
            direct, through = both(sdk, repos, mlchaos, name, cohort)
            assert through["ok"] == direct["ok"] and through["statuses"] == direct["statuses"]
    driver = driver_in("nan", "chaos")
    for kw in ({"full_feature_names": True}, {"features": None, "feature_service": "driver_activity"}):
        assert ask(sdk, repos[1], driver, **kw)["ok"] == ask(sdk, repos[0], driver, **kw)["ok"]


def test_control_and_unassigned_answers_are_byte_identical_over_http(feast_server, mlchaos):
    bodies = [{"features": REFS, "entities": {"driver_id": [1003, UNKNOWN, 1004]}},
              {"features": REFS[:2], "entities": {"driver_id": [1005]}, "full_feature_names": True},
              {"feature_service": "driver_activity", "entities": {"driver_id": [1006, 1007]}}]
    with running(mlchaos, "not_found"):
        for body in bodies:
            raw = json.dumps(body).encode()
            direct = post_json(feast_server.url + "/get-online-features", raw)
            for cohort in ("control", "none"):
                through = request("POST", mlchaos.url + "/get-online-features", raw, {
                    "Content-Type": "application/json", "x-mlchaos-cohort": cohort, "x-mlchaos-token": TOKEN,
                    "x-mlchaos-experiment": "not_found"})
                assert (through.status, through.body) == (direct.status, direct.body)
                assert through.headers.get("x-mlchaos-cohort") == (cohort if cohort == "control" else None)


# -- each fault, as the SDK sees it -----------------------------------------------------------------------


def test_nan_gives_the_sdk_none_with_status_null_value(sdk, repos, mlchaos):
    direct, through = both(sdk, repos, mlchaos, "nan")
    assert through["ok"]["conv_rate"] == [None, None, None]
    assert through["statuses"]["conv_rate"] == ["NULL_VALUE", "NULL_VALUE", "NOT_FOUND"]
    assert {k: v for k, v in through["ok"].items() if k != "conv_rate"} == \
        {k: v for k, v in direct["ok"].items() if k != "conv_rate"}


def test_default_serves_the_fallback_value_even_for_unknown_drivers(sdk, repos, mlchaos):
    direct, through = both(sdk, repos, mlchaos, "default")
    assert through["ok"]["conv_rate"] == [0.5, 0.5, 0.5]
    assert through["statuses"]["conv_rate"] == ["PRESENT"] * 3
    assert through["ok"]["acc_rate"] == direct["ok"]["acc_rate"]


def test_shift_and_out_of_range_reach_the_sdk_silently(sdk, repos, mlchaos):
    direct, through = both(sdk, repos, mlchaos, "shift")
    assert through["ok"]["conv_rate"][:2] == [2 * v for v in direct["ok"]["conv_rate"][:2]]
    assert through["ok"]["conv_rate"][2] is None and through["statuses"] == direct["statuses"]
    direct, through = both(sdk, repos, mlchaos, "out_of_range")
    assert all(v >= 1e5 for v in through["ok"]["acc_rate"][:2]), through
    assert through["statuses"] == direct["statuses"]


def test_drop_and_rename_change_the_keys_the_sdk_hands_back(sdk, repos, mlchaos):
    _, through = both(sdk, repos, mlchaos, "drop_feature")
    assert "city" not in through["ok"] and "conv_rate" in through["ok"]  # app code doing ["city"]: KeyError
    direct, through = both(sdk, repos, mlchaos, "rename_feature")
    assert "conv_rate" not in through["ok"]
    assert through["ok"]["conv_rate_v2"] == direct["ok"]["conv_rate"]


def test_not_found_looks_to_the_sdk_like_unknown_entities(sdk, repos, mlchaos):
    direct, through = both(sdk, repos, mlchaos, "not_found")
    for name in harness.FEATURES:
        assert through["ok"][name] == [None, None, None]
        assert through["statuses"][name] == ["NOT_FOUND"] * 3
    assert through["ok"]["driver_id"] == direct["ok"]["driver_id"]


def test_misalign_hands_the_sdk_silently_wrong_columns(sdk, repos, mlchaos):
    direct, through = both(sdk, repos, mlchaos, "misalign_rotate")
    assert "error" not in through  # no exception: the SDK trusts feature_names
    assert through["ok"]["conv_rate"] == direct["ok"]["acc_rate"]
    assert through["ok"]["acc_rate"] == direct["ok"]["conv_rate"]
    direct, through = both(sdk, repos, mlchaos, "misalign_drop")
    names = list(direct["ok"])
    # to_dict() zips names with results: every name after the missing one takes its left neighbour's
    # values, and the last column is silently lost.
    shifted = [n for n in names if n != "conv_rate"]
    assert through["ok"] == {n: direct["ok"][names[i]] for i, n in enumerate(shifted)}


def test_stale_keeps_serving_the_old_value_after_the_store_changed(sdk, repos, mlchaos, feast_server):
    name = "stale"
    driver = driver_in(name, "chaos")
    with running(mlchaos, name):
        first = ask(sdk, repos[1], driver)
        # The statuses say OUTSIDE_MAX_AGE; to_dict() does not show statuses (and the remote client drops
        # the event timestamps), so the application sees plain values.
        assert first["statuses"]["conv_rate"] == ["OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
        assert first["ok"]["conv_rate"] == ask(sdk, repos[0], driver)["ok"]["conv_rate"]
        new = {"feature_view_name": VIEW, "df": {
            "driver_id": [driver], "event_timestamp": ["2026-12-01T13:00:00Z"], "conv_rate": [0.875],
            "acc_rate": [0.5], "avg_daily_trips": [1], "city": ["new"]}}
        assert post_json(feast_server.url + "/write-to-online-store", new).status == 200
        assert ask(sdk, repos[0], driver)["ok"]["conv_rate"][0] == 0.875
        later = ask(sdk, repos[1], driver)
        assert later["ok"]["conv_rate"][0] == first["ok"]["conv_rate"][0] != 0.875
        assert later["ok"]["city"][0] == "new"  # only conv_rate is stale
    # over HTTP the aged timestamp shows
    raw = json.dumps({"features": REFS[:1], "entities": {"driver_id": [driver]}}).encode()
    with running(mlchaos, name):
        doc = request("POST", mlchaos.url + "/get-online-features", raw, {"Content-Type": "application/json"}).json()
    assert doc["results"][1]["event_timestamps"] == ["2026-12-01T12:00:00Z"]  # 13:00 aged by 1h


def test_store_outages_make_the_sdk_retry_then_raise(sdk, repos, mlchaos):
    for name, error in (("abort", "RetryError"), ("feast_500", "RetryError"), ("stall", "ConnectionError"),
                        ("drop", "ConnectionError")):
        before = mlchaos.metric("mlchaos_faults_injected_total", experiment=name, fault=FAULTS[name]["type"])
        _, through = both(sdk, repos, mlchaos, name)
        assert through.get("error", {}).get("class") == error, (name, through)
        # the SDK tried 1 + 3 times (urllib3 Retry, backoff 0.5 s): the entity stayed in chaos each time
        after = mlchaos.metric("mlchaos_faults_injected_total", experiment=name, fault=FAULTS[name]["type"])
        assert after - before == 4, (name, before, after)


def test_a_feast_404_is_raised_as_feasts_own_exception(sdk, repos, mlchaos):
    _, through = both(sdk, repos, mlchaos, "feast_404")
    assert through["error"]["module"] == "feast.errors"
    assert through["error"]["class"] == "FeatureViewNotFoundException"
    assert "does not exist" in through["error"]["message"]


def test_a_delay_slows_the_sdk_and_changes_nothing_else(sdk, repos, mlchaos):
    direct, through = both(sdk, repos, mlchaos, "delay")
    assert through["ok"] == direct["ok"] and through["seconds"] >= 0.5


# -- what is not a good Feast answer passes through ---------------------------------------------------------


def test_feast_errors_and_other_bodies_pass_through(feast_server, mlchaos):
    headers = {"Content-Type": "application/json", "x-mlchaos-cohort": "chaos", "x-mlchaos-token": TOKEN,
               "x-mlchaos-experiment": "not_found"}
    with running(mlchaos, "not_found"):
        for body in ({"features": ["nope:conv_rate"], "entities": {"driver_id": [1001]}},  # 404
                     {"features": REFS, "entities": {"rider_id": [1]}},                     # 500
                     {"foo": 1}):                                                           # 422
            raw = json.dumps(body).encode()
            direct = post_json(feast_server.url + "/get-online-features", raw)
            through = request("POST", mlchaos.url + "/get-online-features", raw, headers)
            assert direct.status >= 400 and (through.status, through.body) == (direct.status, direct.body)
        before = mlchaos.metric("mlchaos_payload_unparsed_total", experiment="not_found", cohort="chaos",
                                direction="response")
        health = request("GET", mlchaos.url + "/health", None, headers)
        assert (health.status, health.body) == (200, b"")
        after = mlchaos.metric("mlchaos_payload_unparsed_total", experiment="not_found", cohort="chaos",
                               direction="response")
        assert after == before + 1
