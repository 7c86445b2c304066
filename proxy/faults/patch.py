"""``patch``: RFC 6902 JSON Patch operations on the request or the response body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload import apply_patch, dumps, loads
from .base import Fault, FaultContext, Outcome, ResponseView

_OPS = {"add": ("path", "value"), "remove": ("path",), "replace": ("path", "value"), "move": ("from", "path"),
        "copy": ("from", "path"), "test": ("path", "value")}


@dataclass(frozen=True, slots=True, kw_only=True)
class Patch(Fault):
    type: ClassVar[str] = "patch"
    HELP: ClassVar[str] = ("Apply RFC 6902 JSON Patch `operations` to the request body (target: request) or the "
                           "response body (target: response), e.g. a registry answer naming the wrong version. A "
                           "body that is not JSON, or a patch that does not apply, passes untouched.")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("target", "choice", default="response", choices=("request", "response")),
        Field("operations", "any", schema={"type": "array", "items": {"type": "object"}, "minItems": 1},
              help="The JSON Patch: [{op: replace, path: /model_version, value: '2'}, ...]."),
    )

    target: str = "response"
    operations: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        ops = values["operations"]
        if not isinstance(ops, list) or not ops:
            errors.add(f"{path}.operations", "must be a non-empty list of JSON Patch operations")
            return None
        before = len(errors.problems)
        for i, op in enumerate(ops):
            where = f"{path}.operations[{i}]"
            if not isinstance(op, dict) or op.get("op") not in _OPS:
                errors.add(where, f"op must be one of {', '.join(_OPS)}")
                continue
            for key in _OPS[op["op"]]:
                if key not in op:
                    errors.add(f"{where}.{key}", f"required by op {op['op']}")
                elif key in ("path", "from") and not (isinstance(op[key], str) and op[key][:1] in ("", "/")):
                    errors.add(f"{where}.{key}", "must be a JSON pointer ('' or starting with '/')")
        if len(errors.problems) > before:
            return None
        return cls(probability=values["probability"], target=values["target"], operations=tuple(ops))

    def _patched(self, body: bytes) -> bytes | None:
        try:
            return dumps(apply_patch(loads(body), list(self.operations)))
        except ValueError:
            return None

    def apply(self, ctx: FaultContext) -> Outcome:
        if self.target == "request":
            body = ctx.request_body()
            new = self._patched(body) if body else None
            if new is None:
                ctx.count_unparsed("request")
            else:
                ctx.replace_request_body(new)
            return None

        def change(view: ResponseView) -> None:
            new = self._patched(view.body)
            if new is None:
                ctx.count_unparsed("response")
            else:
                view.body = new

        ctx.on_response(change)
        return None
