"""The JSON POSTed when a kill switch trips: one object both Slack and Alertmanager receivers accept.

It has Slack's ``text`` and the fields of Alertmanager's webhook payload (version 4), so a Slack incoming
webhook, an Alertmanager-webhook receiver or a plain HTTP endpoint can take it as is.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["trip_payload"]


def trip_payload(experiment: str, trip: dict[str, Any], instance: str) -> dict[str, Any]:
    guard = str(trip.get("guard", "?"))
    labels = {"alertname": "MlchaosKillSwitchTripped", "experiment": experiment, "guard": guard,
              "instance": instance, "severity": "warning"}
    summary = f"mlchaos stopped experiment {experiment}: {trip.get('reason', guard)}"
    description = (f"chaos {trip.get('n_chaos', 0)} requests, {trip.get('errors_chaos', 0)} errors; "
                   f"control {trip.get('n_control', 0)} requests, {trip.get('errors_control', 0)} errors. "
                   f"Re-arm with POST /experiments/{experiment}/rearm.")
    annotations = {"summary": summary, "description": description}
    alert = {
        "status": "firing", "labels": labels, "annotations": annotations,
        "startsAt": trip.get("at", ""), "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
        "fingerprint": hashlib.sha256(f"{experiment}/{guard}".encode()).hexdigest()[:16],
    }
    return {
        "text": f":rotating_light: {summary}. {description}",
        "version": "4", "status": "firing", "receiver": "mlchaos", "groupKey": f"mlchaos/{experiment}",
        "truncatedAlerts": 0, "groupLabels": {"experiment": experiment}, "commonLabels": labels,
        "commonAnnotations": annotations, "externalURL": "", "alerts": [alert],
        "experiment": experiment, "trip": trip,
    }
