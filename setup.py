"""Compiles the per-request modules with mypyc; everything else installs as plain Python.

Measured (benchmarks/RESULTS.md, A/B with fresh processes): compiled, pass-through serves about 1.5x the
requests per second of the same code interpreted, with 40% less CPU per request. The compiled modules are
the ones listed in HOT; they keep their .py source, which is what runs when the build cannot compile (no C
compiler, or MLCHAOS_PURE_PYTHON=1): slower, same behaviour. `mlchaos --version` says which one is running.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

# Modules every request passes through. Kept to the data plane and what it calls per request: a compiled
# module's classes cannot be monkeypatched or subclassed from Python, which the rest need not give up.
HOT = [
    # the protocol-neutral exchange and the HTTP/1.1 edge
    "proxy/exchange.py",
    "proxy/edges/http1/connection.py",
    "proxy/edges/http1/exchange.py",
    "proxy/edges/http1/upstream.py",
    "proxy/edges/http1/request.py",
    "proxy/edges/http1/framing.py",
    # every request an experiment matches: the router, the cohort hash, the metrics, the kill switch's guards
    "proxy/routing.py",
    "proxy/experiments.py",
    "proxy/cohort.py",
    "proxy/metrics.py",
    "proxy/killswitch/guards.py",
    "proxy/killswitch/sequential.py",
    "proxy/killswitch/seatbelt.py",
    # the payload path of feature faults: parse, read as a table, mutate, write back
    "proxy/payload/bodies.py",
    "proxy/payload/codec.py",
    "proxy/payload/__init__.py",
    "proxy/payload/table.py",
    "proxy/payload/mutate.py",
    "proxy/payload/adapters/__init__.py",
    "proxy/payload/adapters/base.py",
    "proxy/payload/adapters/v1.py",
    "proxy/payload/adapters/v2.py",
    "proxy/payload/adapters/mlflow.py",
    "proxy/payload/adapters/generic.py",
    "proxy/payload/adapters/openai.py",
    # LLM answers of chaos and control: the stream meter and the event framer it runs per chunk
    "proxy/payload/sse.py",
    "proxy/observe/llm.py",
]

HOT_MODULES = tuple(p.removesuffix(".py").replace("/", ".") for p in HOT)
MARKER = "proxy/dataplane/_compiled.py"

# mypyc type-checks what it compiles, following imports into the rest of the package. A build in an
# isolated environment has none of the runtime dependencies installed: their types are then unknown
# (Any), which changes nothing at run time, and type: ignore comments written for them go unused.
MYPY_FLAGS = ["--ignore-missing-imports", "--no-warn-unused-ignores"]


def _plain(why: str) -> list[object]:
    print(f"mlchaos: {why}: the data plane is installed as plain Python (slower, same behaviour)", file=sys.stderr)
    return []


# Commands that only describe the package (metadata, source distribution): nothing to compile.
_DESCRIBE = {"egg_info", "dist_info", "sdist"}


def _forget_builds() -> None:
    """Remove what an earlier in-place build left: the marker and every extension module in the package (one
    of a module no longer in HOT would still shadow its .py) with mypyc's shared libraries beside it."""
    Path(MARKER).unlink(missing_ok=True)
    for built in [*Path("proxy").rglob("*.so"), *Path(".").glob("*__mypyc*.so")]:
        built.unlink()


def ext_modules() -> list[object]:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    if command in _DESCRIBE:
        return []
    _forget_builds()
    if os.environ.get("MLCHAOS_PURE_PYTHON") == "1":
        return _plain("MLCHAOS_PURE_PYTHON=1")
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")[:1]
    if not cc or shutil.which(cc[0]) is None:
        return _plain("no C compiler")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return _plain("no Python headers (Debian: python3-dev)")
    try:
        from mypyc.build import mypycify
    except ImportError:
        return _plain("mypyc is not installed")
    extensions = list(mypycify([*MYPY_FLAGS, *HOT], opt_level="3", debug_level="1"))
    # What was compiled, so the package can tell a compiled build from a stale one (a .py edited since).
    digest = hashlib.sha256(b"".join(Path(p).read_bytes() for p in HOT)).hexdigest()
    Path(MARKER).write_text(f'"""Written by setup.py when it compiles the data plane."""\n\nSOURCES = {HOT_MODULES!r}\n'
                            f'SHA256 = "{digest}"\n')
    return extensions


setup(ext_modules=ext_modules())
