"""Runs a Great Expectations suite over sample tables, in the interpreter that has Great Expectations.

Standalone on purpose (it imports nothing of mlchaos): ``mlchaos expectations`` starts it as a script with
the Great Expectations venv's python, so GE never loads into the sidecar or the CLI's own process::

    python runner.py SUITE.json TABLES.json      # TABLES: {"label": ["file.jsonl" | "file.csv", ...], ...}

It prints one JSON document on stdout: ``{"expectations": [{"type", "kwargs"}], "tables": {label:
{"rows": n, "results": [{"success": bool | null, "error": str | null}, ...]}}}``, a result per expectation in
suite order. An expectation that raises (a column that is not there, for some) counts as failed, with the
error. The suite is GE's JSON: ``{"name", "expectations": [{"type", "kwargs"}]}`` (1.x), or 0.x's
``expectation_suite_name`` / ``expectation_type``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no usage statistics leave the machine


def _suite(doc: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    name = str(doc.get("name") or doc.get("expectation_suite_name") or "suite")
    out = []
    for e in doc.get("expectations", []):
        kind = e.get("type") or e.get("expectation_type")
        if not kind:
            raise ValueError(f"an expectation without a type: {e!r}")
        out.append({"type": str(kind), "kwargs": dict(e.get("kwargs") or {})})
    return name, out


def _frame(files: list[str]) -> Any:
    import pandas as pd

    parts = [pd.read_csv(f) if f.endswith(".csv") else pd.read_json(f, lines=True) for f in files]
    parts = [p for p in parts if len(p.columns)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: runner.py SUITE.json TABLES.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        name, expectations = _suite(json.load(f))
    with open(argv[1]) as f:
        tables: dict[str, list[str]] = json.load(f)

    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    batch_definition = context.data_sources.add_pandas("samples").add_dataframe_asset("table") \
        .add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=name, expectations=[{"type": e["type"], "kwargs": e["kwargs"]}
                                                         for e in expectations])
    out: dict[str, Any] = {"suite": name, "expectations": expectations, "tables": {}}
    for label, files in tables.items():
        frame = _frame(files)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        results = []
        # One at a time: a suite's results come back in no fixed order, and each must meet its expectation.
        for expectation in suite.expectations:
            r = batch.validate(expectation)
            info = r.exception_info if isinstance(r.exception_info, dict) else {}
            error = info.get("exception_message") if info.get("raised_exception") else None
            results.append({"success": bool(r.success) and error is None, "error": error})
        out["tables"][label] = {"rows": len(frame), "columns": [str(c) for c in frame.columns], "results": results}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
