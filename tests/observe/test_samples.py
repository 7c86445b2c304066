"""Samples of the tables each cohort was served: reading bodies as their clients would, the bounds, the files,
and the data plane's copies through a real sidecar in front of a CSV feed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.cohort import CHAOS, CONTROL
from proxy.exchange import Exchange
from proxy.observe import samples as samples_module
from proxy.observe.report.samples import samples_section
from proxy.observe.samples import SampleWriter, read_rows, write_rows
from proxy.routing import UNASSIGNED, Assignment
from tests.conftest import policy_from

CSV = b"id,amount,city\n1,1.5,oslo\n2,,lima\n3,3,pune\n"
ROWS: list[dict[str, Any]] = [{"id": 1, "amount": 1.5, "city": "oslo"}, {"id": 2, "amount": None, "city": "lima"},
        {"id": 3, "amount": 3, "city": "pune"}]
JSONL = b"".join(json.dumps(r).encode() + b"\n" for r in ROWS)


@pytest.mark.parametrize(("path", "content_type", "body"), [
    ("/feeds/data.csv", "", CSV),
    ("/feeds/data.tsv", "", CSV.replace(b",", b"\t")),
    ("/feeds/data.jsonl", "", JSONL),
    ("/feeds/data.json", "", json.dumps(ROWS).encode()),
    ("/api/rows", "application/json", json.dumps({"data": ROWS}).encode()),
    ("/api/rows", "text/csv; charset=utf-8", CSV),
    ("/api/rows", "", JSONL),        # sniffed: a record per line
    ("/api/rows", "", CSV),          # sniffed: neither JSON nor Parquet
])
def test_a_body_reads_as_the_same_rows_in_every_format(path: str, content_type: str, body: bytes) -> None:
    assert read_rows(path, content_type, body, 100) == ROWS


def test_the_path_wins_over_the_body_as_for_a_client_that_asked_for_a_csv() -> None:
    # JSON Lines served under .csv: one odd column per comma-separated piece of the first line, as read_csv makes.
    rows = read_rows("/feeds/data.csv", "application/x-ndjson", JSONL, 100)
    assert rows is not None and len(rows) == 2
    assert list(rows[0]) == ['{"id": 1', ' "amount": 1.5', ' "city": "oslo"}']


def test_limit_and_unreadable_bodies() -> None:
    assert read_rows("/d.csv", "", CSV, 2) == ROWS[:2]
    assert read_rows("/d.jsonl", "", JSONL, 1) == ROWS[:1]
    assert read_rows("/d.json", "", b"{not json", 10) is None
    assert read_rows("/d.csv", "", b"\xff\xfe\x00", 10) is None
    assert read_rows("/d.csv", "", b"", 10) == []


def test_write_rows_as_jsonl_and_csv(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [*ROWS, {"id": 4, "amount": float("nan"), "extra": True}]
    write_rows(tmp_path / "a.jsonl", rows, "jsonl")
    back = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert back[:3] == ROWS and back[3] == {"id": 4, "amount": None, "extra": True}
    write_rows(tmp_path / "b.csv", rows, "csv")
    assert (tmp_path / "b.csv").read_text().splitlines() == [
        "id,amount,city,extra", "1,1.5,oslo,", "2,,lima,", "3,3,pune,", "4,,,True"]
    assert not list(tmp_path.glob("*.tmp"))


async def test_the_writer_keeps_its_bounds_and_closes_a_full_cohort(tmp_path: Path) -> None:
    w = SampleWriter("exp", str(tmp_path), max_rows=5, max_files=3, fmt="jsonl", fault_types=("nan",))
    for _ in range(4):
        w.submit(CONTROL, None, "/d.csv", "", [CSV[:20], CSV[20:]])
    w.submit(CHAOS, ["nan"], "/d.csv", "", [CSV])
    w.submit(CHAOS, None, "/d.csv", "", [CSV])  # a chaos request no fault drew: not written
    w.submit(CHAOS, ["nan", "nan"], "/d.json", "", [b"{broken"])
    assert await w.drain() == 7
    # control: 3 + 2 rows (max_rows 5), then full; the fourth body is not written
    assert sorted(p.name for p in (tmp_path / "exp/control").iterdir()) == ["00001.jsonl", "00002.jsonl"]
    assert (w.files, w.rows) == ({"control": 2, "chaos/nan": 1}, {"control": 5, "chaos/nan": 3})
    assert len((tmp_path / "exp/control/00002.jsonl").read_text().splitlines()) == 2
    assert w.unreadable == 1
    assert (w.open[CHAOS], w.open[CONTROL]) == (True, False)  # chaos/nan still has room; control is full
    for _ in range(samples_module.MAX_QUEUE + 3):
        w.submit(CHAOS, ["nan"], "/d.csv", "", [CSV])
    assert (len(w.queue), w.dropped) == (samples_module.MAX_QUEUE, 3)
    await w.drain()
    assert w.files["chaos/nan"] == 2 and w.open == [False, False]  # 3 + 2 rows: full, nothing more is copied


def test_the_report_section() -> None:
    assert samples_section({}) == ""
    hint = samples_section({"samples": {"dir": "/s/<e>", "files": {"control": 2}}})
    assert "mlchaos expectations" in hint and "/s/&lt;e&gt;" in hint
    page = samples_section({"samples": {"dir": "/s", "files": {}}, "expectations": {
        "suite": "feed", "faults": {"e/nan": "caught"},
        "verdicts": [{"fault": "nan", "expectation": "expect_x(<b>)", "verdict": "caught"}]}})
    assert ">caught</span>" in page and "expect_x(&lt;b&gt;)" in page and "nan: caught" in page


# -- through a real sidecar


async def _feed(start_upstream: Any, body: bytes = CSV) -> Any:
    async def csv_file(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/csv")

    return await start_upstream({"/feeds/data.csv": csv_file})


async def test_a_sidecar_writes_what_each_cohort_was_served(start_upstream: Any, start_sidecar: Any,
                                                             tmp_path: Path) -> None:
    up = await _feed(start_upstream)
    exp = {"name": "feed", "chaos": 50, "control": 50, "kill_switch": {"enabled": False},
           "faults": [{"type": "corrupt_response", "mode": "truncate", "keep": 0.5}],
           "samples": {"dir": str(tmp_path), "max_files": 2, "format": "csv"}}
    sc = await start_sidecar(policy_from(up.url, {"experiments": [exp]}, environment="staging", max_blast_radius=100))
    async with aiohttp.ClientSession() as s:
        for _ in range(40):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/feeds/data.csv") as r:
                assert r.status == 200
                await r.read()
    st = sc.experiments.states["feed"]
    assert st.samples is not None
    await st.samples.drain()
    control = (tmp_path / "feed/control/00001.csv").read_text()
    chaos = (tmp_path / "feed/chaos/corrupt_response/00001.csv").read_text()
    assert control.splitlines() == CSV.decode().splitlines()
    # The first half of the body, as sent: the cut row has no city.
    assert chaos.splitlines() == ["id,amount,city", "1,1.5,"]
    assert st.samples.files == {"control": 2, "chaos/corrupt_response": 2} and st.samples.open == [False, False]


async def test_only_an_experiment_with_samples_copies_bodies(start_upstream: Any, start_sidecar: Any,
                                                            tmp_path: Path) -> None:
    up = await _feed(start_upstream)
    exps = [{"name": "plain", "chaos": 10, "control": 10, "faults": [{"type": "delay", "duration": "1ms"}]},
            {"name": "sampled", "chaos": 10, "control": 10, "faults": [{"type": "delay", "duration": "1ms"}],
             "samples": {"dir": str(tmp_path), "max_files": 1}}]
    sc = await start_sidecar(policy_from(up.url, {"experiments": exps}, max_blast_radius=20))
    plain, sampled = sc.experiments.states["plain"], sc.experiments.states["sampled"]
    assert plain.samples is None and sampled.samples is not None
    loop = asyncio.get_running_loop()
    for cohort in (CHAOS, CONTROL):
        assert Exchange(sc.plane, Assignment(plain, cohort, None), loop).sample is None
        assert Exchange(sc.plane, Assignment(sampled, cohort, None), loop).sample == []
    assert Exchange(sc.plane, UNASSIGNED, loop).sample is None
    # A cohort whose samples are full copies nothing more.
    sampled.samples.open[CONTROL] = False
    assert Exchange(sc.plane, Assignment(sampled, CONTROL, None), loop).sample is None
