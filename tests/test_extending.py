"""EXTENDING.md, proven: a toy fault and a toy payload format are each added to a temporary copy of the
package in at most two files (one new module, one registry edit), and then work for real: the policy accepts
and documents them, and a running sidecar applies them to requests."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEAPOT = '''\
"""``teapot``: a toy fault for tests/test_extending.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome, Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Teapot(Fault):
    type: ClassVar[str] = "teapot"
    HELP: ClassVar[str] = "Answer 418 instead of calling the model."
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("status", "integer", default=418, minimum=400, maximum=499, help="Status of the answer."),
    )
    status: int = 418

    def apply(self, ctx: FaultContext) -> Outcome:
        return Reply(self.status, b'{"error": "teapot"}')
'''

TOY_FORMAT = '''\
"""``toy``: a toy payload format for tests/test_extending.py: {"cols": [...], "rows": [[...], ...]}."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..table import FeatureTable, infer_dtype, origins
from .base import PREDICTIONS, REQUEST, RESPONSE, AdapterOptions, BaseAdapter, Parsed, Predictions


class ToyAdapter(BaseAdapter):
    name: ClassVar[str] = "toy"
    HELP: ClassVar[str] = "Rows under column names."
    PATH: ClassVar[re.Pattern[str] | None] = re.compile(r"/toy/predict$")
    READS: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE, PREDICTIONS})

    def sniff(self, doc: Any) -> bool:
        return isinstance(doc, dict) and set(doc) == {"cols", "rows"}

    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        cols, rows = doc["cols"], doc["rows"]
        columns = [[r[j] for r in rows] for j in range(len(cols))]
        table = FeatureTable(list(cols), columns, [infer_dtype(c) for c in columns], True,
                             origins(len(cols)), origins(len(rows)))
        return Parsed(doc, table, "toy.rows")

    def read_response_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        parsed = self.read_strict(doc, options)
        if parsed is not None:
            parsed.direction = RESPONSE
        return parsed

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = AdapterOptions()) -> Any:
        rows = [[c[i] for c in table.columns] for i in range(table.n_rows)]
        return {"cols": list(table.names), "rows": rows}

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return None
'''

TOY_GUARD = '''\
"""``budget``: a toy guard for tests/test_extending.py: trips once the chaos cohort has seen ``max_errors``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..declare.fields import spec
from .guard import Guard

if TYPE_CHECKING:
    from ..policy.model import KillSwitch


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    enabled: bool = spec("bool", False, help="Trip on a fixed error budget.")
    max_errors: int = spec("integer", 3, minimum=1, help="Chaos errors allowed before the experiment stops.")


class BudgetGuard(Guard):
    name = "budget"
    HELP = "A fixed error budget for the chaos cohort."
    Config = BudgetConfig

    def __init__(self, max_errors: int) -> None:
        self.max_errors, self.errors = max_errors, 0

    @classmethod
    def create(cls, config: Any, kill_switch: KillSwitch) -> Guard | None:
        return BudgetGuard(config.max_errors) if config.enabled else None

    def observe(self, chaos: bool, bad: bool, seconds: float) -> bool:
        self.errors += chaos and bad
        return self.errors >= self.max_errors

    def reason(self) -> str:
        return f"the chaos cohort used its budget of {self.max_errors} errors"

    def snapshot(self) -> dict[str, Any]:
        return {"errors": self.errors, "threshold": self.max_errors}
'''

# Run inside the copy: a real upstream that records what it receives, a real sidecar in front of it.
DRIVER = '''\
import asyncio, json, sys
import aiohttp
from aiohttp import web
from proxy.app import Sidecar
from proxy.policy import compile_policy, policy_schema

received = []

async def echo(request):
    received.append(await request.json())
    return web.json_response({"cols": ["p"], "rows": [[0.5], [0.25]]})

async def main():
    app = web.Application()
    app.router.add_post("/toy/predict", echo)
    app.router.add_post("/budget", lambda request: web.json_response({}))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    force = {"x-mlchaos-cohort": "chaos", "x-mlchaos-token": "t"}
    policy = compile_policy({
        "listen": "127.0.0.1:0", "upstream": f"http://127.0.0.1:{port}", "admin": {"listen": "127.0.0.1:0"},
        "cohort_override": {"enabled": True},
        "experiments": [
            {"name": "tea", "chaos": 1, "faults": [{"type": "teapot"}], "match": {"path": "/tea"},
             "kill_switch": {"enabled": False}},
            {"name": "budgeted", "chaos": 1, "match": {"path": "/budget"}, "faults": [{"type": "abort"}],
             "kill_switch": {"errors": {"enabled": False}, "seatbelt": {"enabled": False},
                             "budget": {"enabled": True, "max_errors": 3}}},
            {"name": "toy", "chaos": 1, "match": {"path": "/toy/**"}, "kill_switch": {"enabled": False},
             "faults": [{"type": "nan", "features": ["b"]},
                        {"type": "shift", "features": ["p"], "offset": 1, "target": "response"}]},
        ]})
    sc = Sidecar(policy, env={"MLCHAOS_OVERRIDE_TOKEN": "t"})
    await sc.start()
    out = {}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{sc.proxy_port}/tea", json={}, headers=force) as r:
            out["teapot"] = [r.status, await r.json()]
        body = {"cols": ["a", "b"], "rows": [[1, 2], [3, 4]]}
        async with s.post(f"http://127.0.0.1:{sc.proxy_port}/toy/predict", json=body, headers=force) as r:
            out["toy_answer"] = await r.json()
        statuses = []
        for _ in range(5):
            async with s.post(f"http://127.0.0.1:{sc.proxy_port}/budget", json={}, headers=force) as r:
                statuses.append(r.status)
        out["budget_statuses"] = statuses
    out["budget_tripped"] = sc.experiments.states["budgeted"].tripped
    out["toy_sent"] = received[0]
    schema = policy_schema()
    out["schema_faults"] = [s["title"] for s in schema["$defs"]["fault"]["oneOf"]]
    out["schema_formats"] = schema["$defs"]["payload"]["properties"]["format"]["anyOf"][0]["enum"]
    named = compile_policy({"upstream": "http://127.0.0.1:9", "experiments": [
        {"name": "n", "chaos": 1, "payload": {"format": "toy"}, "faults": [{"type": "nan"}]}]})
    out["named_format"] = named.experiments[0].payload.format
    out["schema_guards"] = sorted(k for k in schema["$defs"] if k.endswith("_guard"))
    await sc.stop()
    await runner.cleanup()
    print(json.dumps(out))

asyncio.run(main())
'''


def _copy(tmp: Path) -> Path:
    tree = tmp / "tree"
    shutil.copytree(ROOT / "proxy", tree / "proxy", ignore=shutil.ignore_patterns("*.so", "_compiled.py",
                                                                                  "__pycache__"))
    return tree


def _changed(a: Path, b: Path) -> list[str]:
    """Files added or changed in ``b`` compared to ``a`` (relative paths)."""
    out: list[str] = []

    def walk(cmp: filecmp.dircmp[str], rel: str) -> None:
        out.extend(f"{rel}{n}" for n in cmp.right_only)
        out.extend(f"{rel}{n}" for n in cmp.diff_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{rel}{name}/")

    walk(filecmp.dircmp(a, b, ignore=["__pycache__"]), "")
    return sorted(out)


def _add(tree: Path, module: str, text: str, registry: str, edits: list[tuple[str, str]]) -> None:
    """Write the new module, and in the registry insert each text after its anchor."""
    (tree / module).write_text(text)
    path = tree / registry
    source = path.read_text()
    for anchor, insert in edits:
        assert anchor in source, f"{registry} no longer has {anchor!r}: update this test and EXTENDING.md"
        source = source.replace(anchor, anchor + insert, 1)
    path.write_text(source)


def test_a_toy_fault_payload_format_and_guard_take_two_files_each_and_work(tmp_path: Path) -> None:
    pristine = _copy(tmp_path / "a")
    tree = _copy(tmp_path / "b")
    # The fault: its module, and one import plus one entry in the registry (proxy/faults/__init__.py).
    _add(tree, "proxy/faults/teapot.py", TEAPOT, "proxy/faults/__init__.py",
         [("from .abort import Abort\n", "from .teapot import Teapot\n"), ("        Abort,", " Teapot,")])
    fault_files = _changed(pristine, tree)
    assert fault_files == ["proxy/faults/__init__.py", "proxy/faults/teapot.py"]
    # The payload format: its module, and one import plus one instance in the registry.
    _add(tree, "proxy/payload/adapters/toy.py", TOY_FORMAT, "proxy/payload/adapters/__init__.py",
         [("from .mlflow import MLflowAdapter\n", "from .toy import ToyAdapter\n"),
          ("    GenericAdapter(),\n", "    ToyAdapter(),\n")])
    format_files = sorted(set(_changed(pristine, tree)) - set(fault_files))
    assert format_files == ["proxy/payload/adapters/__init__.py", "proxy/payload/adapters/toy.py"]
    # The guard: its module, and one import plus one entry in the guard registry.
    _add(tree, "proxy/killswitch/budget_guard.py", TOY_GUARD, "proxy/killswitch/registry.py",
         [("from .guard import Guard\n", "from .budget_guard import BudgetGuard\n"),
          ("    SeatbeltGuard,\n", "    BudgetGuard,\n")])
    assert sorted(set(_changed(pristine, tree)) - set(fault_files) - set(format_files)) == [
        "proxy/killswitch/budget_guard.py", "proxy/killswitch/registry.py"]

    env = {**os.environ, "PYTHONPATH": str(tree), "MLCHAOS_PURE_PYTHON": "1"}
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["teapot"] == [418, {"error": "teapot"}]
    assert "teapot" in out["schema_faults"]
    # The policy's payload.format choices come from the adapter registry.
    assert "toy" in out["schema_formats"] and out["named_format"] == "toy"
    # The toy format was detected from its path: the request's feature b went out null, and the answer's
    # feature p came back shifted by the response-side fault.
    assert out["toy_sent"] == {"cols": ["a", "b"], "rows": [[1, None], [3, None]]}
    assert out["toy_answer"] == {"cols": ["p"], "rows": [[1.5], [1.25]]}
    # The guard: its policy section and schema come from its declaration, and it stopped the experiment at
    # its third chaos error: the fourth request was no longer in chaos (the abort fault stopped with it).
    assert "budget_guard" in out["schema_guards"]
    assert out["budget_statuses"][:3] == [503, 503, 503] and out["budget_statuses"][3:] == [200, 200]
    assert out["budget_tripped"]["guard"] == "budget"


def test_extending_md_names_the_files_this_test_touches() -> None:
    text = (ROOT / "EXTENDING.md").read_text()
    for path in ("proxy/faults/__init__.py", "proxy/payload/adapters/__init__.py", "proxy/edges/",
                 "tests/test_extending.py"):
        assert path in text, path
    assert textwrap.dedent(text).count("## ") >= 4
