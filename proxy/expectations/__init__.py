"""Did data validation notice? A Great Expectations suite over the samples each cohort was served.

``mlchaos expectations --suite SUITE --samples DIR [--python PY]`` finds the samples an experiment's
``samples`` block wrote (proxy/observe/samples.py: ``DIR/EXPERIMENT/control/*``,
``DIR/EXPERIMENT/chaos/FAULT/*``; DIR may also be one experiment's directory), runs the suite over each
cohort's table in a process of its own (``runner.py`` under the Great Expectations interpreter: never in the
sidecar, never on the request path), and judges each expectation per fault:

    caught    passed on control, failed on chaos: the suite notices this fault
    missed    passed on both: the fault got through this expectation
    broken    failed on control: the expectation fails on untouched data, so it says nothing about the fault

A fault is caught when any expectation catches it, missed otherwise. Exit status: 0 every fault caught; 1 some
fault missed (the check a pipeline's CI wants); 3 none missed but an expectation fails on control; 2 the run
itself failed (no samples, no Great Expectations, a bad suite). The verdicts also go to
``DIR/EXPERIMENT/expectations.json``, which the experiment's HTML report shows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EXIT_BROKEN", "EXIT_ERROR", "EXIT_MISSED", "ExpectationsError", "Verdict", "exit_status", "fault_summary",
           "find_python", "find_tables", "judge", "run", "run_suite", "table_text"]

EXIT_MISSED = 1
EXIT_ERROR = 2
EXIT_BROKEN = 3
RUNNER = Path(__file__).with_name("runner.py")
RESULTS_FILE = "expectations.json"
# Great Expectations imports in ~2 s and validates a few thousand rows per expectation in well under that;
# past this the run is stuck, not slow.
RUN_TIMEOUT = 600.0


class ExpectationsError(RuntimeError):
    """The run could not judge anything: say why and exit EXIT_ERROR."""


@dataclass(frozen=True)
class Verdict:
    experiment: str
    fault: str
    expectation: str
    verdict: str  # caught | missed | broken
    control_error: str | None = None
    chaos_error: str | None = None


def _sample_files(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.iterdir() if p.suffix in (".jsonl", ".csv") and p.is_file())


def find_tables(samples: Path) -> dict[str, dict[str, list[str]]]:
    """experiment -> {"control" | fault -> sample files}; ``samples`` is the samples dir or one experiment's."""
    if not samples.is_dir():
        raise ExpectationsError(f"{samples} is not a directory")
    experiments = [samples] if (samples / "control").is_dir() else sorted(
        p for p in samples.iterdir() if (p / "control").is_dir())
    found: dict[str, dict[str, list[str]]] = {}
    for exp in experiments:
        tables = {"control": _sample_files(exp / "control")}
        chaos = exp / "chaos"
        for fault_dir in sorted(chaos.iterdir()) if chaos.is_dir() else []:
            if fault_dir.is_dir():
                tables[fault_dir.name] = _sample_files(fault_dir)
        if tables["control"] and any(files for name, files in tables.items() if name != "control"):
            found[exp.name] = tables
    if not found:
        raise ExpectationsError(f"no samples under {samples}: need EXPERIMENT/control/ and EXPERIMENT/chaos/FAULT/ "
                                "files (an experiment's samples.dir)")
    return found


def find_python(explicit: str | None) -> str:
    """The interpreter that runs the suite: ``--python``, else this one when it has Great Expectations, else
    the venv scripts/data-servers.sh installs."""
    if explicit:
        return explicit
    if importlib.util.find_spec("great_expectations") is not None:
        return sys.executable
    base = os.environ.get("MLCHAOS_SERVERS_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlchaos" / "servers")
    for venv in sorted(Path(base).glob("great-expectations-*/venv"), key=lambda p: p.stat().st_mtime, reverse=True):
        if (venv / ".mlchaos-installed").exists():
            return str(venv / "bin" / "python")
    raise ExpectationsError("Great Expectations is not importable here: pass --python with an interpreter that "
                            "has it (scripts/data-servers.sh great-expectations installs one)")


def run_suite(python: str, suite: Path, tables: dict[str, list[str]]) -> dict[str, Any]:
    """The runner's JSON for ``tables`` (label -> files), run by ``python`` in its own process."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(tables, f)
    try:
        done = subprocess.run([python, str(RUNNER), str(suite), f.name], capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, check=False, stdin=subprocess.DEVNULL,
                              env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExpectationsError(f"running the suite with {python} failed: {exc}") from None
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise ExpectationsError(f"the suite run exited with {done.returncode}:\n{tail}")
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise ExpectationsError(f"the suite run printed no JSON: {done.stdout[:200]!r}") from None
    return result


def _label(expectation: dict[str, Any]) -> str:
    kwargs = expectation.get("kwargs") or {}
    args = ", ".join(f"{k}={v!r}" if k != "column" else str(v) for k, v in kwargs.items())
    return f"{expectation.get('type')}({args})"


def judge(experiment: str, result: dict[str, Any]) -> list[Verdict]:
    """Per fault and expectation: caught, missed or broken (the module docstring)."""
    labels = [_label(e) for e in result["expectations"]]
    tables = result["tables"]
    control = tables[f"{experiment}/control"]["results"]
    out = []
    for key, table in tables.items():
        exp, _, fault = key.partition("/")
        if exp != experiment or fault == "control":
            continue
        for label, c, x in zip(labels, control, table["results"], strict=True):
            verdict = "broken" if not c["success"] else "missed" if x["success"] else "caught"
            out.append(Verdict(experiment, fault, label, verdict, c["error"], x["error"]))
    return out


def run(suite: Path, samples: Path, python: str | None = None) -> list[Verdict]:
    """Judge every experiment under ``samples``; writes each one's ``expectations.json`` beside its samples."""
    if not suite.is_file():
        raise ExpectationsError(f"no suite file {suite}")
    found = find_tables(samples)
    tables = {f"{exp}/{name}": files for exp, by in found.items() for name, files in by.items()}
    result = run_suite(find_python(python), suite, tables)
    verdicts: list[Verdict] = []
    root = samples if (samples / "control").is_dir() else None
    for exp in found:
        mine = judge(exp, result)
        verdicts.extend(mine)
        directory = root if root is not None else samples / exp
        summary = {"suite": result.get("suite"), "faults": fault_summary(mine),
                   "verdicts": [v.__dict__ for v in mine],
                   "rows": {k.partition("/")[2]: t["rows"] for k, t in result["tables"].items()
                            if k.partition("/")[0] == exp}}
        (directory / RESULTS_FILE).write_text(json.dumps(summary, indent=1))
    return verdicts


def fault_summary(verdicts: list[Verdict]) -> dict[str, str]:
    """fault -> caught (some expectation caught it) | missed."""
    out: dict[str, str] = {}
    for v in verdicts:
        key = f"{v.experiment}/{v.fault}"
        out[key] = "caught" if v.verdict == "caught" or out.get(key) == "caught" else "missed"
    return out


def exit_status(verdicts: list[Verdict]) -> int:
    if "missed" in fault_summary(verdicts).values():
        return EXIT_MISSED
    if any(v.verdict == "broken" for v in verdicts):
        return EXIT_BROKEN
    return 0


def table_text(verdicts: list[Verdict]) -> str:
    """The verdicts as a plain text table, then one line per fault."""
    rows = [("experiment", "fault", "expectation", "verdict")]
    rows += [(v.experiment, v.fault, v.expectation, v.verdict.upper() if v.verdict == "missed" else v.verdict)
             for v in verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows]
    lines.append("")
    lines += [f"{fault}: {what}" for fault, what in fault_summary(verdicts).items()]
    return "\n".join(lines)
