"""Tripped kill switches, remembered in a small JSON file so a restart does not re-arm them."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

from ..logs import event

if TYPE_CHECKING:
    from ..experiments import Experiments

__all__ = ["load_state", "persist_trips", "restore_trips", "save_state"]


def restore_trips(experiments: Experiments, path: str | None) -> None:
    """At start: experiments tripped in an earlier run stay tripped. A file that cannot be read halts every
    experiment: a kill switch that cannot know whether it tripped must not route chaos (fail closed)."""
    try:
        tripped = load_state(path)
    except (OSError, ValueError) as exc:
        experiments.halt(f"kill switch state unreadable: {exc}")
        event("state_unreadable", logging.ERROR, path=path, error=str(exc),
              action="every experiment halted until one is started by hand")
        return
    if tripped:
        experiments.restore_tripped(tripped)
        event("killswitch_restored", experiments=sorted(tripped), path=path)


def persist_trips(experiments: Experiments, path: str | None) -> None:
    """After a trip or a re-arm. A failed write is logged; the running sidecar still knows the trip."""
    try:
        save_state(path, experiments.tripped_state())
    except OSError as exc:
        event("state_write_failed", logging.ERROR, path=path, error=str(exc))


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
