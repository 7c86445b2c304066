"""The Feast adapter and the Feast-only faults: random valid Feast answers round-trip with every untouched field
equal, and each fault's effect on values, statuses and timestamps is exact (Hypothesis)."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.payload import DEFAULT_OPTIONS, AdapterOptions, StaleCache, detect, dumps, feast, get_adapter, loads, mutate
from proxy.payload.adapters.feast import (
    EPOCH,
    NOT_FOUND,
    NULL_VALUE,
    OUTSIDE_MAX_AGE,
    PRESENT,
    STATUSES,
    FeastDetail,
    age_timestamp,
    format_timestamp,
    parse_timestamp,
)
from proxy.payload.table import MISSING, cells_equal

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None,
                    max_examples=60)
ADAPTER = get_adapter("feast")
PATH = "/get-online-features"

# Feast's own answer for two known drivers and an unknown one (Feast 0.67, checked against `feast serve`).
REAL: dict[str, Any] = {
    "results": [
        {"values": [1001, 1002, 99], "statuses": ["PRESENT"] * 3, "event_timestamps": [EPOCH] * 3},
        {"values": [0.10000000149011612, 0.20000000298023224, None], "statuses": ["PRESENT", "PRESENT", "NOT_FOUND"],
         "event_timestamps": ["2026-12-01T12:00:00Z", "2026-12-01T12:00:00Z", EPOCH]},
        {"values": [10, 20, None], "statuses": ["PRESENT", "PRESENT", "NOT_FOUND"],
         "event_timestamps": ["2026-12-01T12:00:00Z", "2026-12-01T11:00:00.250Z", EPOCH]},
        {"values": ["c2", "c0", None], "statuses": ["PRESENT", "PRESENT", "NOT_FOUND"],
         "event_timestamps": ["2026-12-01T12:00:00Z", "2026-12-01T12:00:00Z", EPOCH]},
    ],
    "metadata": {"feature_names": ["driver_id", "conv_rate", "avg_daily_trips", "city"]},
}

# -- strategies: answers Feast could give ---------------------------------------------------------------

stamps = st.integers(1, 4102444800 * 10**9).map(format_timestamp)  # after the epoch, before 2100
feature_values = st.one_of(
    st.floats(-1e9, 1e9, allow_nan=False), st.integers(-(2**53), 2**53), st.text(max_size=5), st.booleans(),
    st.lists(st.floats(-10, 10, allow_nan=False), max_size=3), st.just("NaN"),
)
json_extra = st.dictionaries(st.sampled_from(["status", "x", "feature_view_metadata", "nested"]),
                             st.one_of(st.booleans(), st.integers(-9, 9), st.lists(st.integers(-9, 9), max_size=2)),
                             max_size=2)


@st.composite
def feast_answers(draw: st.DrawFn, *, full: bool | None = None, min_features: int = 1) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    k = draw(st.integers(0, 2))
    use_full = draw(st.booleans()) if full is None else full
    base = draw(st.lists(st.text("abcdefgh_", min_size=1, max_size=6), min_size=k + min_features,
                         max_size=k + 5, unique=True))
    keys, feats = base[:k], base[k:]
    names = keys + [f"view__{f}" if use_full else f for f in feats]
    results: list[dict[str, Any]] = []
    for _ in keys:
        key_values = draw(st.lists(st.one_of(st.integers(0, 10**6), st.text("0123456789", min_size=1, max_size=4)),
                                   min_size=n, max_size=n))
        results.append({"values": key_values, "statuses": [PRESENT] * n, "event_timestamps": [EPOCH] * n})
    for _ in feats:
        values: list[Any] = []
        statuses: list[str] = []
        ts: list[str] = []
        for _ in range(n):
            kind = draw(st.sampled_from([PRESENT, PRESENT, PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE]))
            # As Feast answers: a value it did not find is null at the epoch, a null value keeps its time.
            values.append(None if kind in (NOT_FOUND, NULL_VALUE) else draw(feature_values))
            statuses.append(kind)
            ts.append(EPOCH if kind == NOT_FOUND else draw(stamps))
        result: dict[str, Any] = {"values": values, "statuses": statuses, "event_timestamps": ts}
        if draw(st.booleans()):
            extra = draw(st.dictionaries(st.sampled_from(["a", "z"]), st.integers(-(2**53), 2**53), max_size=1))
            result = {**extra, **result}
        results.append(result)
    doc: dict[str, Any] = {"results": results, "metadata": {"feature_names": names}}
    if draw(st.booleans()):
        doc["metadata"]["feature_view_metadata"] = [{"name": "view", "version": 2}]
    doc.update(draw(json_extra))
    if draw(st.booleans()):  # the key order Feast's own converter uses
        doc = {"metadata": doc.pop("metadata"), **doc}
    return doc


def _read(doc: dict[str, Any], options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
    parsed = ADAPTER.read_response_strict(doc, options)
    assert parsed is not None and isinstance(parsed.detail, FeastDetail)
    return parsed


def _keys(doc: dict[str, Any]) -> int:
    return len(_read(doc).detail.keys)


def _columns(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(zip(doc["metadata"]["feature_names"], doc["results"], strict=True))


def _outside(doc: dict[str, Any]) -> dict[str, Any]:
    """Everything but the results and the feature names."""
    out = {k: v for k, v in doc.items() if k != "results"}
    out["metadata"] = {k: v for k, v in doc["metadata"].items() if k != "feature_names"}
    return out


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- timestamps ---------------------------------------------------------------------------------------------


@given(ns=st.integers(0, 253402300799 * 10**9))
def test_timestamps_round_trip_in_feasts_adaptive_precision(ns: int) -> None:
    text = format_timestamp(ns)
    assert parse_timestamp(text) == ns
    whole = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ns // 10**9)
    assert text.startswith(whole.strftime("%Y-%m-%dT%H:%M:%S"))
    frac = text[19:-1]
    assert frac == "" or len(frac) in (4, 7, 10)  # ".123", ".123456" or ".123456789"


def test_timestamps_as_feast_writes_them() -> None:
    assert format_timestamp(0) == EPOCH
    assert parse_timestamp("2026-12-01T12:00:00Z") == int(datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()) * 10**9
    assert format_timestamp(parse_timestamp("2026-12-01T11:00:00.250Z") or 0) == "2026-12-01T11:00:00.250Z"
    assert age_timestamp("2026-12-01T12:00:00Z", 3600) == "2026-12-01T11:00:00Z"
    assert age_timestamp("2026-01-01T00:00:00Z", 1.5) == "2025-12-31T23:59:58.500Z"
    assert age_timestamp(EPOCH, 3600) == EPOCH  # never before the epoch
    for bad in ("2026-12-01 12:00:00", "2026-13-01T00:00:00Z", "x", None, 5):
        assert age_timestamp(bad, 60) == bad


# -- reading and writing -----------------------------------------------------------------------------------


def test_feasts_own_answer_reads_as_features_keyed_by_the_entity_column() -> None:
    parsed = _read(REAL)
    assert parsed.table.names == ["conv_rate", "avg_daily_trips", "city"]
    assert parsed.detail.keys == ["driver_id"]
    assert parsed.table.columns[1] == [10, 20, None]
    assert [parsed.detail.row_key(i) for i in range(3)] == ["driver_id=1001", "driver_id=1002", "driver_id=99"]
    assert ADAPTER.write(parsed, parsed.table) == REAL
    assert detect(PATH, {"features": ["v:f"], "entities": {"driver_id": [1]}}) is ADAPTER
    assert detect("/other", {"feature_service": "s", "entities": {"driver_id": [1]}}) is ADAPTER


@SETTINGS
@given(doc=feast_answers())
def test_random_answers_round_trip_exactly(doc: dict[str, Any]) -> None:
    parsed = _read(doc)
    assert len(parsed.table.names) + len(parsed.detail.keys) == len(doc["results"])
    assert ADAPTER.write(parsed, parsed.table) == doc
    assert loads(dumps(ADAPTER.write(parsed, parsed.table.copy()))) == doc


@SETTINGS
@given(doc=feast_answers(), seed=st.integers(0, 2**32 - 1),
       fault=st.sampled_from(["nan", "shift", "default", "out_of_range", "drop_feature", "rename_feature"]),
       null_status=st.sampled_from([NULL_VALUE, NOT_FOUND]), fraction=st.floats(0, 1))
def test_value_faults_keep_statuses_and_timestamps_consistent(
    doc: dict[str, Any], seed: int, fault: str, null_status: str, fraction: float,
) -> None:
    before = copy.deepcopy(doc)
    options = AdapterOptions(null_status=null_status)
    parsed = _read(doc, options)
    params: dict[str, Any] = {"scale": 2.0, "offset": 1.0} if fault == "shift" else {}
    m = mutate.MUTATIONS[fault](parsed.table, rng=_rng(seed), fraction=fraction, **params)
    out = ADAPTER.write(parsed, m.table, options)
    assert doc == before  # the parsed answer is never changed in place
    assert _outside(out) == _outside(doc)
    k = len(parsed.detail.keys)
    assert out["results"][:k] == doc["results"][:k]  # entity keys untouched
    names = out["metadata"]["feature_names"]
    assert names == parsed.detail.keys + m.table.names
    assert len(out["results"]) == len(names)
    orig = _columns(doc)
    for j, name in enumerate(m.table.names):
        origin = m.table.col_origin[j] if m.table.col_origin else j
        assert origin is not None
        src = doc["results"][k + origin]
        res = out["results"][k + j]
        assert [x for x in res if x not in ("values", "statuses", "event_timestamps")] == \
            [x for x in src if x not in ("values", "statuses", "event_timestamps")]
        for i, v in enumerate(res["values"]):
            assert not (isinstance(v, float) and math.isnan(v))  # Feast's JSON carries no NaN
            if cells_equal(v, src["values"][i]):
                assert (res["statuses"][i], res["event_timestamps"][i]) == \
                    (src["statuses"][i], src["event_timestamps"][i])
            elif v is None:
                assert res["statuses"][i] == null_status
                assert res["event_timestamps"][i] == (EPOCH if null_status == NOT_FOUND else
                                                      src["event_timestamps"][i])
            else:
                assert res["statuses"][i] == PRESENT
                assert res["event_timestamps"][i] == src["event_timestamps"][i]
        if name in orig and fault != "rename_feature":
            assert src is orig[name]
    if fault == "drop_feature":
        assert set(names) <= set(doc["metadata"]["feature_names"])


@SETTINGS
@given(doc=feast_answers(), seed=st.integers(0, 2**32 - 1), fraction=st.floats(0, 1),
       by=st.sampled_from(["rows", "features"]))
def test_not_found_nulls_exactly_the_cells_it_picks(doc: dict[str, Any], seed: int, fraction: float,
                                                    by: str) -> None:
    parsed = _read(doc)
    got = feast.not_found(parsed, rng=_rng(seed), fraction=fraction, by=by)  # type: ignore[arg-type]
    assert got is not None
    out = ADAPTER.write(got.parsed, got.table)
    k = len(parsed.detail.keys)
    assert _outside(out) == _outside(doc) and out["metadata"] == doc["metadata"]
    assert out["results"][:k] == doc["results"][:k]
    n, f = parsed.table.n_rows, parsed.table.n_cols
    changed = 0
    for j in range(f):
        src, res = doc["results"][k + j], out["results"][k + j]
        for i in range(n):
            cell = (res["values"][i], res["statuses"][i], res["event_timestamps"][i])
            if cell != (src["values"][i], src["statuses"][i], src["event_timestamps"][i]):
                assert cell == (None, NOT_FOUND, EPOCH)
                changed += 1
    assert changed == got.changed
    # the shape of the hit: whole rows, or whole features
    gone = [[out["results"][k + j]["statuses"][i] == NOT_FOUND for i in range(n)] for j in range(f)]
    if by == "rows":
        rows = [i for i in range(n) if all(gone[j][i] for j in range(f))]
        assert all(gone[j][i] == (i in rows) or doc["results"][k + j]["statuses"][i] == NOT_FOUND
                   for j in range(f) for i in range(n))
        assert len(rows) >= math.floor(fraction * n)
    else:
        cols = [j for j in range(f) if all(gone[j])]
        if fraction > 0:
            assert len(cols) >= min(f, max(1, math.floor(fraction * f + 0.5)))


@SETTINGS
@given(doc=feast_answers(min_features=2), seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["rotate", "drop_name"]))
def test_misalign_moves_names_and_nothing_else(doc: dict[str, Any], seed: int, mode: str) -> None:
    parsed = _read(doc)
    got = feast.misalign(parsed, rng=_rng(seed), mode=mode)  # type: ignore[arg-type]
    assert got is not None
    out = ADAPTER.write(got.parsed, got.table)
    assert out["results"] == doc["results"]
    assert _outside(out) == _outside(doc)
    names, was = out["metadata"]["feature_names"], doc["metadata"]["feature_names"]
    k = len(parsed.detail.keys)
    assert names[:k] == was[:k]
    if mode == "rotate":
        assert sorted(names) == sorted(was) and names != was
        moved = [j for j in range(len(was)) if names[j] != was[j]]
        assert len(moved) == got.changed >= 2
    else:
        assert len(names) == len(was) - 1 and set(names) < set(was)
        first = next(j for j in range(len(names)) if names[j] != was[j]) if names != was[:-1] else len(names)
        assert names[first:] == was[first + 1:]  # every later name slid onto the result before its own


@SETTINGS
@given(first=feast_answers(full=False), seed=st.integers(0, 2**32 - 1), age=st.integers(0, 10**6),
       outside=st.booleans(), data=st.data())
def test_stale_serves_the_entitys_earlier_answer_aged(first: dict[str, Any], seed: int, age: int, outside: bool,
                                                      data: st.DataObject) -> None:
    parsed1 = _read(first)
    cache = StaleCache(1 << 22)
    # The first answer: nothing older for any entity, so only the timestamps age (and statuses change).
    got1 = feast.stale(parsed1, rng=_rng(seed), cache=cache, age=age, outside_max_age=outside)
    assert got1 is not None
    out1 = ADAPTER.write(got1.parsed, got1.table)
    k = len(parsed1.detail.keys)
    for j in range(k, len(first["results"])):
        src, res = first["results"][j], out1["results"][j]
        assert res["values"] == src["values"]
        assert res["event_timestamps"] == [age_timestamp(t, age) for t in src["event_timestamps"]]
        assert res["statuses"] == [OUTSIDE_MAX_AGE if outside and v is not None else s
                                   for v, s in zip(src["values"], src["statuses"], strict=True)]
    # A second answer for the same entities, with new values: each row takes the first answer's cells.
    second = copy.deepcopy(first)
    for j in range(k, len(second["results"])):
        res = second["results"][j]
        res["values"] = [data.draw(st.floats(-5, 5)) if v is not None else None for v in res["values"]]
        res["values"] = [None if isinstance(v, float) and math.isnan(v) else v for v in res["values"]]
    if k == 0:
        return  # no entity keys: every row is the same (empty) key, covered above
    keys = [parsed1.detail.row_key(i) for i in range(parsed1.table.n_rows)]
    got2 = feast.stale(_read(second), rng=_rng(seed), cache=cache, outside_max_age=False)
    assert got2 is not None
    out2 = ADAPTER.write(got2.parsed, got2.table)
    for j in range(k, len(first["results"])):
        for i in range(parsed1.table.n_rows):
            last = max(r for r in range(len(keys)) if keys[r] == keys[i])  # the first answer's last row of it
            src = first["results"][j]
            if isinstance(src["values"][last], list):  # only scalar cells are remembered: this one stays
                src, last = second["results"][j], i
            assert cells_equal(out2["results"][j]["values"][i], src["values"][last])
            assert out2["results"][j]["statuses"][i] == src["statuses"][last]
            assert out2["results"][j]["event_timestamps"][i] == src["event_timestamps"][last]


def test_stale_memory_is_bounded() -> None:
    cache = StaleCache(64 * 1024)
    for d in range(5000):
        doc: dict[str, Any] = copy.deepcopy(REAL)
        doc["results"][0]["values"] = [d, d + 10**6, d + 2 * 10**6]
        feast.stale(_read(doc), rng=_rng(d), cache=cache, age=60)
    assert cache.nbytes <= 64 * 1024
    assert 0 < len(cache) < 3 * 5000


# -- the request, and what is not Feast's ------------------------------------------------------------------


def test_the_request_reads_entities_and_feature_references() -> None:
    doc = {"features": ["v:a", "v:b"], "entities": {"driver_id": [1, 2], "city": ["x", "y"]},
           "full_feature_names": True, "include_feature_view_version_metadata": False}
    parsed = ADAPTER.read_strict(doc, AdapterOptions())
    assert parsed is not None and parsed.table.names == ["driver_id", "city", "v:a", "v:b"]
    assert parsed.table.columns[2] == [MISSING, MISSING]
    assert ADAPTER.write(parsed, parsed.table) == doc
    dropped = mutate.drop_feature(parsed.table, rng=_rng(0), features=["v:b"])
    assert ADAPTER.write(parsed, dropped.table) == {**doc, "features": ["v:a"]}
    nulled = mutate.nan(parsed.table, rng=_rng(0), features=["driver_id"], fraction=1.0)
    assert ADAPTER.write(parsed, nulled.table)["entities"] == {"driver_id": [None, None], "city": ["x", "y"]}
    service = {"feature_service": "s", "entities": {"driver_id": [1]}}
    parsed = ADAPTER.read_strict(service, AdapterOptions())
    assert parsed is not None and ADAPTER.write(parsed, parsed.table) == service


@pytest.mark.parametrize("doc", [
    {}, [], {"results": []}, {"metadata": {"feature_names": ["a"]}, "results": []},
    {"metadata": {"feature_names": ["a", "b"]}, "results": [{"values": [1], "statuses": ["PRESENT"]}]},
    {"metadata": {"feature_names": ["a"]}, "results": [{"values": [1, 2], "statuses": ["PRESENT"]}]},
    {"metadata": {"feature_names": ["a", "a"]}, "results": [{"values": [1], "statuses": ["PRESENT"]}] * 2},
    {"metadata": {"feature_names": ["a", "b"]},
     "results": [{"values": [1], "statuses": ["PRESENT"]}, {"values": [1, 2], "statuses": ["PRESENT"] * 2}]},
    {"metadata": {"feature_names": [1]}, "results": [{"values": [1], "statuses": ["PRESENT"]}]},
    {"metadata": {"feature_names": ["a"]}, "results": [{"values": [1], "statuses": [1]}]},
    {"metadata": {"feature_names": ["a"]}, "results": [{"values": [1], "statuses": ["PRESENT"],
                                                        "event_timestamps": [EPOCH, EPOCH]}]},
    {"metadata": {"feature_names": ["a"]}, "results": [{"values": [], "statuses": []}]},
    "\"{\\\"module\\\": \\\"feast.errors\\\"}\"",
])
def test_what_is_not_a_feast_answer_is_not_read(doc: Any) -> None:
    assert ADAPTER.read_response_strict(doc, AdapterOptions()) is None
    assert ADAPTER.read(doc, direction="response") is None


_anything = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3), st.just(EPOCH),
              st.sampled_from(STATUSES)),
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(
        st.sampled_from(["metadata", "feature_names", "results", "values", "statuses", "event_timestamps",
                         "entities", "features", "feature_service"]), ch, max_size=4),
    max_leaves=30)


@SETTINGS
@given(doc=_anything, seed=st.integers(0, 2**32 - 1))
def test_any_json_never_makes_the_readers_or_faults_raise(doc: Any, seed: int) -> None:
    for parsed in (ADAPTER.read_strict(doc, AdapterOptions()), ADAPTER.read_response_strict(doc, AdapterOptions())):
        if parsed is None:
            continue
        parsed.table.validate()
        ADAPTER.write(parsed, parsed.table)
        for got in (feast.not_found(parsed, rng=_rng(seed)), feast.misalign(parsed, rng=_rng(seed)),
                    feast.stale(parsed, rng=_rng(seed), cache=StaleCache(1 << 16), age=5, outside_max_age=True)):
            if got is not None:
                ADAPTER.write(got.parsed, got.table)
