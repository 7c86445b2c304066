"""``scramble_metadata``: a model version's metadata is missing or wrong: tags, description, run id, flavours.

In the registry's answers (every model-version record, and the registered model's own tags and description)
and in the MLmodel file (its ``run_id`` and ``flavors``). ``remove`` leaves the field out; ``scramble`` keeps
it, wrong: tag values rotated among the tags, the description and run id reversed, each flavour renamed
(``python_function`` -> ``python_function_scrambled``: no loader finds it). The registry's data is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.mlflow_registry import (
    ARTIFACT,
    MLMODEL,
    RegistryCall,
    drop_blocks,
    top_blocks,
    version_records,
)
from .base import FaultContext, Outcome, ResponseView
from .registry_base import RegistryFault, read_json, set_etag, write_json

__all__ = ["ScrambleMetadata"]

_WHAT = ("tags", "description", "run_id", "flavors")
_LOOKUPS = ("alias", "model", "latest", "version", "search_versions", "search_models")


def _scramble_value(key: str, value: Any) -> Any:
    if key == "tags" and isinstance(value, list) and value:
        tags = [t for t in value if isinstance(t, dict)]
        if len(tags) == 1:
            return [{**tags[0], "value": str(tags[0].get("value", ""))[::-1] or "scrambled"}]
        values = [t.get("value") for t in tags]
        return [{**t, "value": v} for t, v in zip(tags, values[1:] + values[:1], strict=True)]
    if isinstance(value, str) and value:
        return value[::-1] if value[::-1] != value else value + "-scrambled"
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrambleMetadata(RegistryFault):
    type: ClassVar[str] = "scramble_metadata"
    HELP: ClassVar[str] = ("Remove or scramble a model version's tags, description, run id (registry answers) and "
                           "run id or flavours (the MLmodel file).")
    FIELDS: ClassVar[tuple[Field, ...]] = (*RegistryFault.FIELDS,
        Field("what", "string_list", default=("tags", "description", "run_id"),
              help="Which metadata: tags, description, run_id, flavors."),
        Field("mode", "choice", default="remove", choices=("remove", "scramble"), help="Leave out, or change."),
    )

    what: tuple[str, ...] = ("tags", "description", "run_id")
    mode: str = "remove"

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        unknown = [w for w in values["what"] if w not in _WHAT]
        if unknown:
            errors.add(f"{path}.what", f"unknown {unknown}; expected some of: {', '.join(_WHAT)}")
            return None
        return cls(**values)

    def _change(self, record: dict[str, Any], keys: tuple[str, ...]) -> bool:
        changed = False
        for key in keys:
            if key in self.what and key in record:
                if self.mode == "remove":
                    del record[key]
                    changed = True
                else:
                    new = _scramble_value(key, record[key])
                    changed |= new != record[key]
                    record[key] = new
        return changed

    def apply(self, ctx: FaultContext) -> Outcome:
        call = self.registry_call(ctx)
        if call is None:
            return None
        if call.kind in _LOOKUPS and self.wants(call.name):
            def records(view: ResponseView) -> None:
                doc = read_json(view)
                changed = [r for r in version_records(call.kind, doc) if self._change(r, ("tags", "description",
                                                                                          "run_id"))]
                models = [doc.get("registered_model")] if call.kind == "model" and isinstance(doc, dict) else []
                changed += [m for m in models if isinstance(m, dict) and self._change(m, ("tags", "description"))]
                if changed:
                    write_json(view, doc)
                    for r in changed:
                        version = r.get("version") if isinstance(r.get("version"), str) else None
                        self.audit(call, asked=version, served=version, what=list(self.what), mode=self.mode)

            ctx.on_response(records)
        elif (call.kind == ARTIFACT and call.path is not None and call.path.rsplit("/", 1)[-1] == MLMODEL
              and ("run_id" in self.what or "flavors" in self.what) and self.wants(call.name)):
            ctx.on_response(lambda view: self._mlmodel(view, call))
        return None

    def _mlmodel(self, view: ResponseView, call: RegistryCall) -> None:
        if view.status != 200:
            return
        try:
            text = view.body.decode()
        except UnicodeDecodeError:
            return
        keys: set[str] = {k for k in ("run_id", "flavors") if k in self.what}
        if self.mode == "remove":
            new = drop_blocks(text, keys)
        else:
            lines = text.split("\n")
            for key, first, end in top_blocks(text):
                if key == "run_id" and "run_id" in keys:
                    lines[first] = "run_id: " + _scramble_value("run_id", lines[first].split(":", 1)[1].strip())
                elif key == "flavors" and "flavors" in keys:
                    for i in range(first + 1, end):
                        line = lines[i]
                        # a flavour's name: indented once, "  name:"
                        if line.startswith("  ") and not line[2:3].isspace() and line.rstrip().endswith(":"):
                            lines[i] = line.rstrip()[:-1] + "_scrambled:"
            new = "\n".join(lines)
        if new == text:
            return
        view.body = new.encode()
        set_etag(view)
        self.audit(call, asked=call.version, served=call.version, path=call.path, what=sorted(keys),
                   mode=self.mode)
