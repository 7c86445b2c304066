"""The JSON Schema of a policy file, for editors and CI linting, derived from the model's declarations.

Cross-field rules (shares, blast radius, upstream references, end after start) are the loader's alone;
the schema checks shapes, names, bounds of plain numbers and the syntax of unit strings.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import faults as _faults
from ..declare.fields import fields_of, fields_schema
from .model import MAX_BLAST_RADIUS_PERCENT, DailyWindow, Experiment, Policy

__all__ = ["policy_schema"]

# Declared classes that sit in arrays, so no field names their $defs entry; every nested section does.
_ITEMS: dict[str, type] = {"experiment": Experiment, "window": DailyWindow}


def _defs() -> dict[str, type]:
    """Each "$ref": "#/$defs/NAME" of the declarations, to its class: the sections found from Policy down."""
    found: dict[str, type] = {}
    todo = [Policy, *_ITEMS.values()]
    while todo:
        for field in fields_of(todo.pop()):
            if field.section is not None and field.ref not in found:
                found[field.ref] = field.section
                todo.append(field.section)
    return {**_ITEMS, **found}


def policy_schema() -> dict[str, Any]:
    """A fresh JSON Schema (draft 2020-12) of the whole policy file."""
    defs: dict[str, Any] = {name: fields_schema(fields_of(cls)) for name, cls in sorted(_defs().items())}
    defs["fault"] = {"oneOf": _faults.fault_schemas()}
    schema = fields_schema(
        fields_of(Policy),
        **{
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "mlchaos policy",
            "description": "Chaos experiments for the mlchaos sidecar proxy in front of a model server.",
            "$defs": defs,
            # max_blast_radius above 50 only with environment: staging (the loader's rule, as a schema can say it)
            "if": {"properties": {"environment": {"const": "staging"}}, "required": ["environment"]},
            "else": {"properties": {"max_blast_radius": {"oneOf": [
                {"type": "number", "maximum": MAX_BLAST_RADIUS_PERCENT}, {"type": "string"}]}}},
        },
    )
    # fields_schema shares the declarations' nested schema objects; callers get their own.
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
