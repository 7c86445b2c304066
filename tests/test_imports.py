"""The import-cycle contract of ``make lint`` (scripts/check_imports.py): none in proxy/, and it can fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "check_imports.py"


def _run(package: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(package)], capture_output=True, text=True, timeout=60)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "toy"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_package_has_no_runtime_import_cycle() -> None:
    done = _run(ROOT / "proxy")
    assert done.returncode == 0, done.stderr
    assert "no import cycles" in done.stdout


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    root = _package(tmp_path, {"a.py": "from . import b\n", "b.py": "def f():\n    from .a import x\n"})
    done = _run(root)
    assert done.returncode == 1
    assert "toy.a -> toy.b" in done.stderr and "toy.b -> toy.a" in done.stderr


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path) -> None:
    # Importing toy.p.leaf runs toy/p/__init__.py, which imports toy.user, which imports toy.p.leaf.
    root = _package(tmp_path, {
        "p/__init__.py": "from ..user import y\n", "p/leaf.py": "x = 1\n", "user.py": "from .p.leaf import x\ny = x\n",
    })
    assert _run(root).returncode == 1


def test_type_only_imports_are_not_edges(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\nelse:\n    pass\n",
    })
    done = _run(root)
    assert done.returncode == 0, done.stderr
