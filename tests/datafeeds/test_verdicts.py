"""mlchaos expectations without Great Expectations: the samples layout, the verdicts, the exit status, the text.

The runner's JSON is what proxy/expectations/runner.py prints; a stand-in runner (a Python script that prints
a fixed answer) takes GE's place where the CLI is run end to end. The real suite runs in test_expectations.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.expectations import (
    EXIT_BROKEN,
    EXIT_ERROR,
    EXIT_MISSED,
    ExpectationsError,
    exit_status,
    fault_summary,
    find_tables,
    judge,
    table_text,
)

EXPECTATIONS = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "amount"}},
                {"type": "expect_column_to_exist", "kwargs": {"column": "city"}},
                {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]


def _result(**tables: list[bool]) -> dict[str, Any]:
    return {"suite": "s", "expectations": EXPECTATIONS,
            "tables": {k.replace("__", "/"): {"rows": 3, "results": [{"success": ok, "error": None} for ok in v]}
                       for k, v in tables.items()}}


def test_caught_missed_and_broken_per_fault_and_expectation() -> None:
    result = _result(feed__control=[True, True, False], feed__nan=[False, True, False],
                     feed__reorder_rows=[True, True, True])
    verdicts = judge("feed", result)
    assert [(v.fault, v.verdict) for v in verdicts] == [
        ("nan", "caught"), ("nan", "missed"), ("nan", "broken"),
        ("reorder_rows", "missed"), ("reorder_rows", "missed"), ("reorder_rows", "broken")]
    assert verdicts[0].expectation == "expect_column_values_to_not_be_null(amount)"
    assert verdicts[2].expectation == "expect_table_row_count_to_be_between(min_value=1)"
    assert fault_summary(verdicts) == {"feed/nan": "caught", "feed/reorder_rows": "missed"}
    assert exit_status(verdicts) == EXIT_MISSED
    text = table_text(verdicts)
    assert "feed/reorder_rows: missed" in text and "MISSED" in text and "broken" in text


def test_exit_status_without_a_missed_fault() -> None:
    assert exit_status(judge("f", _result(f__control=[True, True, True], f__nan=[False, True, True]))) == 0
    assert exit_status(judge("f", _result(f__control=[False, True, True], f__nan=[True, False, True]))) == EXIT_BROKEN


def _layout(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_find_tables_takes_the_samples_dir_or_one_experiments(tmp_path: Path) -> None:
    _layout(tmp_path, {"a/control/00001.jsonl": "{}\n", "a/chaos/nan/00001.jsonl": "{}\n",
                       "a/chaos/nan/00002.csv": "x\n", "a/chaos/nan/00003.jsonl.tmp": "",
                       "b/control/00001.jsonl": "{}\n",  # no chaos sample yet: nothing to judge
                       "c/other.txt": ""})
    found = find_tables(tmp_path)
    assert list(found) == ["a"]
    assert [Path(f).name for f in found["a"]["nan"]] == ["00001.jsonl", "00002.csv"]
    assert list(find_tables(tmp_path / "a")) == ["a"]
    with pytest.raises(ExpectationsError, match="no samples"):
        find_tables(tmp_path / "b")


FAKE_RUNNER = """
import json, sys
tables = json.load(open(sys.argv[2]))
print(json.dumps({"suite": "fake", "expectations": [{"type": "expect_x", "kwargs": {"column": "c"}}],
      "tables": {k: {"rows": len(v), "results": [{"success": k.endswith("/control"), "error": None}]}
                 for k, v in tables.items()}}))
"""


def test_the_cli_end_to_end_with_a_stand_in_runner(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    _layout(samples, {"feed/control/00001.jsonl": "{}\n", "feed/chaos/nan/00001.jsonl": "{}\n"})
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"name": "fake", "expectations": []}))
    # A "python" that ignores runner.py and answers as the runner would: chaos fails, control passes.
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\nshift\nexec {sys.executable} -c '{FAKE_RUNNER}' \"$@\"\n")
    fake.chmod(0o755)
    cmd = [sys.executable, "-m", "proxy", "expectations", "--suite", str(suite), "--samples", str(samples)]
    done = subprocess.run([*cmd, "--python", str(fake)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "feed/nan: caught" in done.stdout
    written = json.loads((samples / "feed" / "expectations.json").read_text())
    assert written["faults"] == {"feed/nan": "caught"} and written["rows"] == {"control": 1, "nan": 1}
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "none"), "--python", str(fake)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert missing.returncode == EXIT_ERROR and "not a directory" in missing.stderr
    failing = subprocess.run([*cmd, "--python", "/bin/false"], capture_output=True, text=True, timeout=60,
                             check=False)
    assert failing.returncode == EXIT_ERROR and "exited with 1" in failing.stderr
