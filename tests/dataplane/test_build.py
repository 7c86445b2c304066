"""The compiled data plane (setup.py, mypyc) and its plain-Python fallback, on copies of the package."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.dataplane import build
from tests.conftest import free_port
from tests.test_app import wait_for

ROOT = Path(__file__).resolve().parents[2]

# No MLCHAOS_* or PYTHON* variables of the test run leak into the copies.
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MLCHAOS_", "PYTHON"))}
needs_compiled = pytest.mark.skipif(build() != "compiled", reason="this tree's data plane is not compiled")


def copy_tree(dest: Path) -> Path:
    """The package as built here (sources, extension modules, mypyc's shared library beside it)."""
    shutil.copytree(ROOT / "proxy", dest / "proxy", ignore=shutil.ignore_patterns("__pycache__"))
    for lib in ROOT.glob("*__mypyc*.so"):
        shutil.copy2(lib, dest)
    return dest


def in_copy(tree: Path, code: str, timeout: float = 20) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=timeout,
                          env=ENV | {"PYTHONPATH": str(tree)})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


WHICH = ("from proxy.dataplane import build; from proxy import exchange; "
         "print(build(), exchange.__file__.rsplit('.', 1)[-1])")


@needs_compiled
def test_the_copy_runs_the_compiled_modules(tmp_path: Path) -> None:
    assert in_copy(copy_tree(tmp_path), WHICH) == "compiled so"


@needs_compiled
def test_a_source_edited_after_the_build_makes_it_stale(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    with (tree / "proxy/edges/http1/framing.py").open("a") as f:
        f.write("\n# edited\n")
    # The extension still runs (Python prefers it to the .py), which is exactly why this must be told.
    assert in_copy(tree, WHICH) == "stale so"


@needs_compiled
def test_an_extension_module_left_by_an_older_build_makes_it_stale(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    built = next((tree / "proxy/edges/http1").glob("framing.*.so"))
    # As if gate.py had been compiled once and then dropped from setup.py's HOT: its .so would still run.
    shutil.copy2(built, tree / "proxy" / built.name.replace("framing", "gate", 1))
    assert in_copy(tree, WHICH) == "stale so"


def test_without_extension_modules_the_sources_run(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    for so in tree.rglob("*.so"):
        so.unlink()
    assert in_copy(tree, WHICH) == "interpreted py"
    (tree / "proxy/dataplane/_compiled.py").unlink(missing_ok=True)
    assert in_copy(tree, WHICH) == "interpreted py"


def test_a_plain_build_says_why(tmp_path: Path) -> None:
    """setup.py records why it installed plain Python (pip shows a build's output only when it fails): the
    version line carries it, and only for an interpreted build."""
    tree = copy_tree(tmp_path)
    for so in tree.rglob("*.so"):
        so.unlink()
    marker = tree / "proxy/dataplane/_compiled.py"
    marker.write_text("SOURCES = ()\nSHA256 = ''\nPLAIN = 'no C compiler (cc not found)'\n")
    note = "from proxy.dataplane import build_note; print(build_note())"
    assert in_copy(tree, note) == "interpreted: no C compiler (cc not found)"
    marker.unlink()
    assert in_copy(tree, note) == "interpreted"


@needs_compiled
def test_a_compiled_build_has_no_reason_to_give(tmp_path: Path) -> None:
    assert in_copy(copy_tree(tmp_path), "from proxy.dataplane import build_note; print(build_note())") == "compiled"


async def test_the_plain_python_data_plane_forwards_a_request(tmp_path: Path, start_upstream: Any) -> None:
    """The fallback a machine without a C compiler gets: a real `mlchaos run` on the sources alone."""
    tree = copy_tree(tmp_path)
    for so in tree.rglob("*.so"):
        so.unlink()
    up = await start_upstream()
    port, admin = free_port(), free_port()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"listen: 127.0.0.1:{port}\nupstream: {up.url}\nadmin: {{listen: '127.0.0.1:{admin}'}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.cli", "run", "--config", str(policy), cwd=tree,
        env=ENV | {"PYTHONPATH": str(tree)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async def answered() -> bool:
            try:
                async with aiohttp.ClientSession() as s, \
                        s.post(f"http://127.0.0.1:{port}/v1/models/m:predict", data=b'{"instances":[[1]]}') as r:
                    return r.status == 200 and (await r.json())["body_len"] == 19
            except aiohttp.ClientConnectionError:
                return False

        assert await wait_for(answered, 15), "the plain-Python proxy never forwarded the request"
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    start = json.loads(err.decode().splitlines()[0])
    assert (start["event"], start["dataplane"]) == ("start", "interpreted")


def _union_isinstance_calls(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance" \
                and len(node.args) == 2 and isinstance(node.args[1], ast.BinOp) \
                and isinstance(node.args[1].op, ast.BitOr):
            lines.append(node.lineno)
    return lines


def test_compiled_modules_test_types_with_tuples_not_unions() -> None:
    # Compiled, isinstance(x, A | B) builds a union object on every call (~170 ns, measured); a tuple of types
    # is a native check. Only the modules setup.py compiles are held to it.
    hot = next(ast.literal_eval(node.value) for node in ast.parse((ROOT / "setup.py").read_text()).body
               if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HOT" for t in node.targets))
    assert "proxy/exchange.py" in hot and "proxy/edges/http1/exchange.py" in hot
    found = {p: lines for p in hot if (lines := _union_isinstance_calls(ROOT / p))}
    assert found == {}, found


def test_the_union_check_finds_a_union(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f(x):\n    return isinstance(x, int | float) or isinstance(x, (int, str))\n")
    assert _union_isinstance_calls(sample) == [2]
