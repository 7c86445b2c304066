"""Tripped kill switches, remembered in a small JSON file so a restart does not re-arm them."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

__all__ = ["load_state", "save_state"]


def load_state(path: str | None) -> dict[str, dict[str, Any]]:
    """Tripped experiments by name; a missing file means none. An unreadable one raises: fail closed."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    tripped = data.get("tripped") if isinstance(data, dict) else None
    if not isinstance(tripped, dict):
        raise ValueError(f"{path}: not a mlchaos state file (no 'tripped' mapping)")
    return {str(k): v for k, v in tripped.items() if isinstance(v, dict)}


def save_state(path: str | None, tripped: dict[str, dict[str, Any]]) -> None:
    """Write atomically (a temporary file renamed over the old one), so a crash never leaves half a file."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mlchaos-state-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "tripped": tripped}, fh, indent=2, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
