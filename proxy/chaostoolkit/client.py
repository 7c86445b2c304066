"""The admin API as the Chaos Toolkit extension calls it: where it is, the bearer token, one JSON request.

Standard library only (urllib), so that importing the extension costs nothing and needs no chaoslib: the
probes and actions run in ``chaos run``'s process, one blocking call at a time, as chaostoolkit expects.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_ADMIN_URL", "AdminError", "admin_call", "admin_settings"]

# The policy's default admin address (AdminSettings.listen).
DEFAULT_ADMIN_URL = "http://127.0.0.1:9000"
# A call to the admin API answers in milliseconds; five seconds bounds a hung or unreachable sidecar.
DEFAULT_TIMEOUT = 5.0


class AdminError(RuntimeError):
    """The admin API refused the call or could not be reached; chaoslib turns it into a failed activity."""


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), None)


def admin_settings(configuration: Mapping[str, Any] | None,
                   secrets: Mapping[str, Any] | None) -> tuple[str, str | None, float]:
    """(admin URL, bearer token or None, timeout): from the experiment's configuration and secrets, else
    the environment (MLCHAOS_ADMIN_URL, MLCHAOS_ADMIN_TOKEN), else the policy's default address."""
    configuration, secrets = configuration or {}, secrets or {}
    url = _first(configuration.get("mlchaos_admin_url"), os.environ.get("MLCHAOS_ADMIN_URL"), DEFAULT_ADMIN_URL)
    token = _first(secrets.get("admin_token"), secrets.get("mlchaos_admin_token"),
                   configuration.get("mlchaos_admin_token"), os.environ.get("MLCHAOS_ADMIN_TOKEN"))
    timeout = float(_first(configuration.get("mlchaos_timeout"), DEFAULT_TIMEOUT))
    return str(url).rstrip("/"), (str(token) if token is not None else None), timeout


def admin_call(method: str, path: str, configuration: Mapping[str, Any] | None,
               secrets: Mapping[str, Any] | None, *, body: bytes | None = None,
               content_type: str = "application/json", ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
    """``method path`` on the admin API: (status, decoded JSON body). A status outside ``ok`` raises
    AdminError with the API's own message."""
    url, token, timeout = admin_settings(configuration, secrets)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:  # 4xx/5xx: the API's answer, still JSON
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise AdminError(f"{method} {url}{path}: {getattr(e, 'reason', e)}") from e
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw.decode("utf-8", errors="replace")
    if status not in ok:
        detail = data.get("error", data) if isinstance(data, dict) else data
        problems = data.get("problems") if isinstance(data, dict) else None
        raise AdminError(f"{method} {path} answered {status}: {detail}" + (f" {problems}" if problems else ""))
    return status, data
