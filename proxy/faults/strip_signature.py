"""``strip_signature``: a model version arrives without its input schema (and input example), as when a model is
registered without its metadata.

The MLmodel file is YAML (text/plain); its top-level ``signature:`` and ``saved_input_example_info:`` blocks are
cut out line by line, the rest keeps its bytes. Content-Length follows the new body (the proxy frames it) and the
ETag is recomputed, so that a cache in between does not keep the original under the same validator. MLflow's
client then loads the model without a schema and skips input validation: a frame with a wrong column reaches
the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.mlflow_registry import ARTIFACT, MLMODEL, drop_blocks
from .base import FaultContext, Outcome, ResponseView
from .registry_base import RegistryFault, set_etag

__all__ = ["StripSignature"]

# What each choice removes from the MLmodel file: its top-level keys.
_KEYS = {"signature": ("signature",), "input_example": ("saved_input_example_info",)}


@dataclass(frozen=True, slots=True, kw_only=True)
class StripSignature(RegistryFault):
    type: ClassVar[str] = "strip_signature"
    HELP: ClassVar[str] = ("Remove the signature (input schema) and the input example from a model's MLmodel file, "
                           "fixing Content-Length and ETag.")
    FIELDS: ClassVar[tuple[Field, ...]] = (*RegistryFault.FIELDS,
        Field("remove", "string_list", default=("signature", "input_example"),
              help="What to remove: signature, input_example."),
    )

    remove: tuple[str, ...] = ("signature", "input_example")

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        unknown = [r for r in values["remove"] if r not in _KEYS]
        if unknown:
            errors.add(f"{path}.remove", f"unknown {unknown}; expected some of: {', '.join(_KEYS)}")
            return None
        return cls(**values)

    def apply(self, ctx: FaultContext) -> Outcome:
        call = self.registry_call(ctx)
        if call is None or call.kind != ARTIFACT or call.path is None or call.path.rsplit("/", 1)[-1] != MLMODEL:
            return None
        if self.models is not None and not self.wants(call.name):
            return None
        keys = frozenset(k for r in self.remove for k in _KEYS[r])

        def strip(view: ResponseView) -> None:
            if view.status != 200:
                return
            try:
                text = view.body.decode()
            except UnicodeDecodeError:
                return
            stripped = drop_blocks(text, keys)
            if stripped is text:
                return
            view.body = stripped.encode()
            set_etag(view)
            self.audit(call, asked=call.version, served=call.version, path=call.path, removed=sorted(keys))

        ctx.on_response(strip)
        return None
