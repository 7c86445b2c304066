"""The data plane: the per-request path, on asyncio Protocols and the llhttp parser (httptools).

Its per-request modules are compiled with mypyc when the package is built where a C compiler is
(setup.py); ``build()`` says whether the running code is that compiled build.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from functools import cache
from pathlib import Path

__all__ = ["build", "build_note"]


@cache
def build() -> str:
    """``compiled``; ``interpreted`` (built without a compiler, or MLCHAOS_PURE_PYTHON=1); or ``stale``: compiled
    from sources other than the .py files beside it, which then do not run (rebuild: ``make venv``)."""
    try:
        marker = importlib.import_module(f"{__name__}._compiled")
    except ImportError:
        return "interpreted"
    sources, extension = b"", False
    for name in marker.SOURCES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is None:
            return "stale"
        extension = extension or not origin.endswith(".py")
        source = Path(origin).with_name(name.rpartition(".")[2] + ".py")
        sources += source.read_bytes() if source.exists() else b""
    if not extension:
        return "interpreted"
    native = tuple(getattr(marker, "NATIVE", ()))  # C modules of our own, each beside its .c
    for name in native:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or spec.origin.endswith(".py"):
            return "stale"
        source = Path(spec.origin).with_name(name.rpartition(".")[2] + ".c")
        sources += source.read_bytes() if source.exists() else b""
    if hashlib.sha256(sources).hexdigest() != marker.SHA256 or _extensions_outside({*marker.SOURCES, *native}):
        return "stale"
    return "compiled"


def build_note() -> str:
    """``build()``, and for plain Python why setup.py installed it so (what pip does not show of a build that
    succeeded): ``interpreted: no C compiler (gcc not found)``."""
    built = build()
    try:
        why = str(getattr(importlib.import_module(f"{__name__}._compiled"), "PLAIN", ""))
    except ImportError:
        why = ""
    return f"{built}: {why}" if built == "interpreted" and why else built


def _extensions_outside(compiled: set[str]) -> bool:
    """Whether the package holds an extension module the marker does not list (left by an older build)."""
    root = Path(__file__).resolve().parents[1]
    for path in root.rglob("*.so"):
        rel = path.relative_to(root)
        if ".".join([root.name, *rel.parent.parts, path.name.split(".")[0]]) not in compiled:
            return True
    return False
