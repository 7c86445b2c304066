"""Chaos Toolkit actions: start, stop, halt and re-arm mlchaos experiments; load a policy.

In an experiment: ``{"type": "python", "module": "proxy.chaostoolkit.actions", "func": "start_experiment",
"arguments": {"name": "fallback"}}``. Each takes chaostoolkit's ``configuration`` and ``secrets``
(``mlchaos_admin_url``; ``admin_token`` in a secrets scope; else MLCHAOS_ADMIN_URL / MLCHAOS_ADMIN_TOKEN) and
returns the admin API's answer; a refusal (unknown experiment, 409, an invalid policy) fails the action.

No ``from __future__ import annotations``: chaoslib's discovery reads the annotations as types.
"""

from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from .client import AdminError, admin_call

__all__ = ["halt", "load_policy", "rearm_experiment", "start_experiment", "stop_experiment"]


def _experiment_call(verb: str, name: str, configuration: dict[str, Any] | None,
                     secrets: dict[str, Any] | None) -> dict[str, Any]:
    _, data = admin_call("POST", f"/experiments/{quote(name, safe='')}/{verb}", configuration, secrets)
    return dict(data)


def start_experiment(name: str, configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start the experiment ``name`` now, even if the policy has it disabled or a halt is in force; a
    tripped kill switch still refuses (re-arm it first)."""
    return _experiment_call("start", name, configuration, secrets)


def stop_experiment(name: str, configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stop the experiment ``name``: its requests pass through untouched until it is started again."""
    return _experiment_call("stop", name, configuration, secrets)


def rearm_experiment(name: str, configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-arm the tripped kill switch of ``name`` (its counts start over); fails if it has not tripped."""
    return _experiment_call("rearm", name, configuration, secrets)


def halt(configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stop every experiment of the sidecar: the rollback that needs no name."""
    _, data = admin_call("POST", "/halt", configuration, secrets)
    return dict(data)


def load_policy(path: str | None = None, policy: dict[str, Any] | str | None = None,
                configuration: dict[str, Any] | None = None,
                secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a new policy into the running sidecar: from the YAML file at ``path``, or ``policy`` given
    inline (a mapping, or YAML text). An invalid policy fails the action and the running one stays."""
    if (path is None) == (policy is None):
        raise AdminError("load_policy takes one of path or policy")
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    elif isinstance(policy, str):
        text = policy
    else:
        text = yaml.safe_dump(policy, sort_keys=False)
    _, data = admin_call("POST", "/policy", configuration, secrets, body=text.encode(),
                         content_type="application/yaml")
    return dict(data)
