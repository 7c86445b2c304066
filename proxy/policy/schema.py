"""The JSON Schema of a policy file, for editors and CI linting, derived from the loader's field tables.

Cross-field rules (shares, blast radius, upstream references, end after start) are the loader's alone;
the schema checks shapes, names, bounds of plain numbers and the syntax of unit strings.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import faults as _faults  # a module import: proxy.faults imports proxy.policy
from .fields import Field, fields_schema
from .loader import (
    ADMIN_FIELDS,
    COHORT_OVERRIDE_FIELDS,
    ERROR_GUARD_FIELDS,
    EXPERIMENT_FIELDS,
    KILL_SWITCH_FIELDS,
    LATENCY_GUARD_FIELDS,
    LIMITS_FIELDS,
    MATCH_FIELDS,
    OBSERVE_FIELDS,
    PAYLOAD_FIELDS,
    POLICY_FIELDS,
    REVEAL_FIELDS,
    SCHEDULE_FIELDS,
    SEATBELT_FIELDS,
    SHADOW_FIELDS,
    TIMEOUTS_FIELDS,
    WEBHOOK_FIELDS,
    WINDOW_FIELDS,
)

__all__ = ["policy_schema"]

# Each "$ref": "#/$defs/NAME" in the field tables resolves to one of these.
_DEFS: dict[str, tuple[Field, ...]] = {
    "admin": ADMIN_FIELDS,
    "timeouts": TIMEOUTS_FIELDS,
    "limits": LIMITS_FIELDS,
    "cohort_override": COHORT_OVERRIDE_FIELDS,
    "experiment": EXPERIMENT_FIELDS,
    "match": MATCH_FIELDS,
    "schedule": SCHEDULE_FIELDS,
    "window": WINDOW_FIELDS,
    "reveal": REVEAL_FIELDS,
    "kill_switch": KILL_SWITCH_FIELDS,
    "error_guard": ERROR_GUARD_FIELDS,
    "latency_guard": LATENCY_GUARD_FIELDS,
    "seatbelt": SEATBELT_FIELDS,
    "webhook": WEBHOOK_FIELDS,
    "payload": PAYLOAD_FIELDS,
    "observe": OBSERVE_FIELDS,
    "shadow": SHADOW_FIELDS,
}


def policy_schema() -> dict[str, Any]:
    """A fresh JSON Schema (draft 2020-12) of the whole policy file."""
    defs: dict[str, Any] = {name: fields_schema(fields) for name, fields in _DEFS.items()}
    defs["fault"] = {"oneOf": _faults.fault_schemas()}
    schema = fields_schema(
        POLICY_FIELDS,
        **{
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "mlchaos policy",
            "description": "Chaos experiments for the mlchaos sidecar proxy in front of a model server.",
            "$defs": defs,
        },
    )
    # fields_schema shares the field tables' nested schema objects; callers get their own.
    schema = copy.deepcopy(schema)
    _allow_null_for_optional(schema)
    return schema


def _allow_null_for_optional(node: object) -> None:
    """``read_fields`` takes null for "use the default" (``admin:`` with nothing under it), so the schema
    must accept null wherever a field is optional; a required field given null is still refused."""
    if isinstance(node, list):
        for item in node:
            _allow_null_for_optional(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _allow_null_for_optional(value)
    props = node.get("properties")
    if node.get("type") == "object" and isinstance(props, dict):
        required = set(node.get("required", ()))
        for name, prop in props.items():
            if name not in required and isinstance(prop, dict):
                outer = {key: prop.pop(key) for key in ("description", "default") if key in prop}
                props[name] = {**outer, "anyOf": [prop, {"type": "null"}]}
