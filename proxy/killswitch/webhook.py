"""The kill switch's webhook: when it trips, one JSON object that Slack and Alertmanager receivers accept.

It has Slack's ``text`` and the fields of Alertmanager's webhook payload (version 4), so a Slack incoming
webhook, an Alertmanager-webhook receiver or a plain HTTP endpoint can take it as is. ``send_trip`` POSTs it
in a task of its own: the trip has already stopped the chaos, and a slow receiver must not hold anything up.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import aiohttp
import orjson

from .. import _tasks
from ..logs import event
from ..policy.model import Webhook

__all__ = ["post_webhook", "send_trip", "trip_payload"]


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


def send_trip(webhook: Webhook, experiment: str, trip: dict[str, Any], instance: str) -> None:
    """POST the trip of ``experiment`` to ``webhook`` in the background; the outcome is logged."""
    payload = trip_payload(experiment, trip, instance)
    _ = _tasks.spawn(post_webhook(webhook.url, webhook.timeout, payload), name="mlchaos-webhook")


async def post_webhook(url: str, timeout: float, payload: dict[str, Any]) -> None:
    """One POST, no retry (the state file and the metrics keep the trip); failures are logged, not raised."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.post(url, data=orjson.dumps(payload),
                             headers={"Content-Type": "application/json"}) as resp:
            event("webhook_sent", url=url, status=resp.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        event("webhook_failed", logging.WARNING, url=url, error=repr(exc))
