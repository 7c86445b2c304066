"""Did validation notice? A real Great Expectations suite over the samples a real sidecar wrote.

nginx serves the feed behind mlchaos; experiments with ``samples`` run one after the other, each putting half
the reads in chaos and half in control (drawn per request): ``missing`` nulls a third of the amounts (the
article's "missing values increase"), ``shuffled`` reorders the rows (data out of order), ``truncated`` cuts the
CSV in half (pandas reads a short table whose last row is cut mid-line). ``mlchaos expectations`` runs the
suite in the Great Expectations venv: the missing values and the truncation are caught, the reordering is
missed (no expectation of the suite looks at order), and the exit status says a fault was missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.expectations import EXIT_BROKEN
from proxy.observe.report import render_report
from tests.datafeeds import harness
from tests.servers.harness import request

pytestmark = pytest.mark.slow

SUITE = {
    "name": "feed",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "qty"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "amount"}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "city", "value_set": ["oslo", "lima",
                                                                                                   "pune"]}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0,
                                                                   "max_value": 100}},
    ],
}
READS = 24


def _experiment(name: str, fault: dict[str, Any], samples: Path) -> dict[str, Any]:
    return {"name": name, "chaos": 50, "control": 50, "enabled": False, "faults": [fault],
            "kill_switch": {"enabled": False}, "samples": {"dir": str(samples), "max_files": 4}}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("samples")


@pytest.fixture(scope="module")
def sidecar(nginx: harness.Nginx, samples: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[harness.Sidecar]:
    experiments = [
        _experiment("missing", {"type": "nan", "target": "response", "features": ["amount"], "fraction": 0.3},
                    samples),
        _experiment("shuffled", {"type": "reorder_rows", "target": "response", "fraction": 1.0}, samples),
        _experiment("truncated", {"type": "corrupt_response", "mode": "truncate"}, samples)]
    proxy = harness.Sidecar(nginx.url, experiments, tmp_path_factory.mktemp("mlchaos-ge"))
    try:
        yield proxy
    finally:
        proxy.stop()


def _wait_for(files: list[Path], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not all(f.exists() for f in files):
        assert time.monotonic() < deadline, f"no samples after {seconds:g} s: {[str(f) for f in files]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def written(sidecar: harness.Sidecar, clients: harness.Clients, samples: Path) -> Path:
    for name, fault in (("missing", "nan"), ("shuffled", "reorder_rows"), ("truncated", "corrupt_response")):
        with sidecar.running(name):
            for _ in range(READS):
                clients.ok({"op": "read", "url": sidecar.url + "/feeds/data.csv", "kind": "csv"})
        _wait_for([samples / name / "control" / "00001.jsonl", samples / name / "chaos" / fault / "00001.jsonl"])
    return samples


def test_samples_hold_what_each_cohort_was_served(written: Path) -> None:
    control = [json.loads(line) for line in (written / "truncated/control/00001.jsonl").read_text().splitlines()]
    chaos = [json.loads(line) for line in
             (written / "truncated/chaos/corrupt_response/00001.jsonl").read_text().splitlines()]
    assert control == harness.ROWS
    # Half a CSV: the rows before the cut as they were, then the row the cut went through.
    assert 0 < len(chaos) < len(harness.ROWS) and chaos[:-1] == harness.ROWS[:len(chaos) - 1]
    assert chaos[-1] != harness.ROWS[len(chaos) - 1]
    # Bounded: at most max_files per cohort and fault.
    assert 1 <= len(list((written / "truncated/control").glob("*.jsonl"))) <= 4


def test_expectations_reports_the_caught_and_the_missed_fault(written: Path, tmp_path: Path,
                                                              sidecar: harness.Sidecar) -> None:
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(SUITE))
    python = harness.venv("great-expectations") / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "proxy", "expectations", "--suite", str(suite), "--samples",
                           str(written), "--python", str(python)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 1, done.stdout + done.stderr  # a fault was missed
    assert "missing/nan: caught" in done.stdout and "truncated/corrupt_response: caught" in done.stdout
    assert "shuffled/reorder_rows: missed" in done.stdout
    missing = json.loads((written / "missing" / "expectations.json").read_text())
    assert [v["verdict"] for v in missing["verdicts"]] == [
        "missed",  # qty not null: untouched by the fault
        "caught",  # amount not null
        "missed",  # city in its set
        "missed",  # amount between 0 and 100: a null is not out of range
    ]
    assert [v["expectation"] for v in missing["verdicts"]][:2] == [
        "expect_column_values_to_not_be_null(qty)", "expect_column_values_to_not_be_null(amount)"]
    found = json.loads((written / "truncated" / "expectations.json").read_text())
    verdicts = {v["expectation"]: v["verdict"] for v in found["verdicts"]}
    # The cut row lost its qty (null) or its city ends mid-word: one of the two catches it, nothing is broken.
    assert "caught" in (verdicts["expect_column_values_to_not_be_null(qty)"],
                        verdicts["expect_column_values_to_be_in_set(city, value_set=['oslo', 'lima', 'pune'])"])
    assert "broken" not in verdicts.values()
    shuffled = json.loads((written / "shuffled" / "expectations.json").read_text())
    assert {v["verdict"] for v in shuffled["verdicts"]} == {"missed"}

    # The same verdicts in the experiment's report.
    report = request("GET", f"{sidecar.admin_url}/experiments/missing/report").json()
    assert report["expectations"]["faults"] == {"missing/nan": "caught"}
    page = render_report(report)
    assert "<h2>Data validation</h2>" in page and ">caught</span>" in page and ">missed</span>" in page


def test_csv_samples_and_a_suite_in_the_0x_format(peers: None, tmp_path: Path) -> None:
    """samples.format: csv, and a suite saved by Great Expectations 0.x (expectation_suite_name,
    expectation_type): read alike."""
    for rel, text in {"e/control/00001.csv": "a,b\n1,x\n2,y\n", "e/chaos/nan/00001.csv": "a,b\n,x\n2,y\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"expectation_suite_name": "old", "expectations": [
        {"expectation_type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"expectation_type": "expect_column_values_to_be_in_set", "kwargs": {"column": "b", "value_set": ["x"]}}]}))
    python = harness.venv("great-expectations") / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "proxy", "expectations", "--suite", str(suite), "--samples",
                           str(tmp_path), "--python", str(python)], capture_output=True, text=True, timeout=300,
                          check=False)
    # not null: caught; b in {x}: fails on control too (y), so broken. No fault missed, the suite broken: 3.
    assert done.returncode == EXIT_BROKEN, done.stdout + done.stderr
    verdicts = json.loads((tmp_path / "e" / "expectations.json").read_text())["verdicts"]
    assert [(v["expectation"].partition("(")[0], v["verdict"]) for v in verdicts] == [
        ("expect_column_values_to_not_be_null", "caught"), ("expect_column_values_to_be_in_set", "broken")]
