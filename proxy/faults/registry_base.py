"""What the registry faults share: which call a request is, what the registry told them so far, the audit line.

A registry fault sees the MLflow registry's answers to its cohort (``proxy.payload.adapters.mlflow_registry``
reads them). What it learns there (which artifact path holds which model version, and each version's record)
lives in a ``RegistryFacts`` of the fault object, bounded: it is replaced with the fault when the policy is
reloaded, and a long-running sidecar in front of a registry with many models keeps only the most recent.
Each act of a registry fault is logged once, as ``registry_fault`` with the model, the version asked for and the
version served, so that an incident can be tied to the experiment.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import orjson

from ..declare.fields import Field
from ..logs import event
from ..payload.adapters.mlflow_registry import (
    ARTIFACT,
    ARTIFACT_LIST,
    RegistryCall,
    artifact_prefix,
    classify,
    version_records,
)
from .base import Fault, FaultContext, ResponseView

__all__ = ["Bounded", "RegistryFacts", "RegistryFault", "read_json", "set_etag", "write_json"]

K = TypeVar("K")
V = TypeVar("V")

# Versions, records and rewrites remembered per fault: a registry with more live models than this forgets the
# least recently used (a forgotten fact is learned again from the next answer that states it).
MAX_FACTS = 1024


class Bounded(OrderedDict[K, V], Generic[K, V]):
    """A dict that keeps its ``limit`` most recently set or read keys."""

    def __init__(self, limit: int = MAX_FACTS) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)

    def find(self, key: K) -> V | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value


class RegistryFacts:
    """What the registry's answers said: where each version's files are served, and its record."""

    def __init__(self) -> None:
        # (model, version) -> artifact path prefix, and back.
        self.prefix: Bounded[tuple[str, str], str] = Bounded()
        self.owner: Bounded[str, tuple[str, str]] = Bounded()
        # (model, version) -> the version's record as the registry sent it (a copy).
        self.records: Bounded[tuple[str, str], dict[str, Any]] = Bounded()
        # MLflow 3's logged-model id (a record's source "models:/m-...") -> (model, version): the id is a
        # segment of the version's artifact paths ("0/models/m-.../artifacts/MLmodel").
        self.model_ids: Bounded[str, tuple[str, str]] = Bounded()
        # (model, alias) -> the version it points at, as last stated by the registry.
        self.aliases: Bounded[tuple[str, str], str] = Bounded()

    def learn_prefix(self, name: str, version: str, prefix: str) -> None:
        self.prefix.put((name, version), prefix)
        self.owner.put(prefix, (name, version))

    def learn_record(self, record: dict[str, Any]) -> None:
        name, version = record.get("name"), record.get("version")
        if isinstance(name, str) and isinstance(version, str):
            self.records.put((name, version), orjson.loads(orjson.dumps(record)))
            source = record.get("source")
            for alias in record.get("aliases") or ():
                if isinstance(alias, str):
                    self.aliases.put((name, alias), version)
            if isinstance(source, str) and source.startswith("models:/") and "/" not in source[8:]:
                self.model_ids.put(source[8:], (name, version))
            prefix = artifact_prefix(source) if isinstance(source, str) else None
            if prefix is not None:
                self.learn_prefix(name, version, prefix)

    def learn(self, call: RegistryCall, doc: Any) -> None:
        """Everything an answer to ``call`` states about versions."""
        if call.kind == "download_uri" and call.name and call.version and isinstance(doc, dict):
            uri = doc.get("artifact_uri")
            prefix = artifact_prefix(uri) if isinstance(uri, str) else None
            if prefix is not None:
                self.learn_prefix(call.name, call.version, prefix)
        for record in version_records(call.kind, doc):
            self.learn_record(record)
        if not isinstance(doc, dict) or call.kind not in ("model", "search_models"):
            return
        models = doc.get("registered_models") or [] if call.kind == "search_models" else [doc.get("registered_model")]
        for rm in models:
            if not isinstance(rm, dict) or not isinstance(rm.get("name"), str):
                continue
            name: str = rm["name"]
            for entry in rm.get("aliases") or ():
                alias = entry.get("alias") if isinstance(entry, dict) else None
                if isinstance(alias, str) and isinstance(entry.get("version"), str):
                    self.aliases.put((name, alias), entry["version"])

    def version_of(self, path: str) -> tuple[str, str, str] | None:
        """The (model, version) whose files ``path`` (under the artifact root) belongs to, if known, and the
        path within them."""
        for prefix, owner in self.owner.items():
            if path == prefix or path.startswith(prefix + "/"):
                return (*owner, path[len(prefix) + 1:])
        segments = path.split("/")
        for i, segment in enumerate(segments):
            found = self.model_ids.get(segment) if segment.startswith("m-") else None
            if found is not None:
                rest = segments[i + 2:] if segments[i + 1: i + 2] == ["artifacts"] else segments[i + 1:]
                return (*found, "/".join(rest))
        return None


def read_json(view: ResponseView) -> Any:
    """The JSON document of a 200 answer, or None."""
    if view.status != 200 or not view.body:
        return None
    try:
        return orjson.loads(view.body)
    except orjson.JSONDecodeError:
        return None


def set_etag(view: ResponseView) -> None:
    """A new strong validator for a changed body, in the form the MLflow server sends (a quoted hex digest),
    so that a cache in between does not keep the new bytes under the old ETag or the old under the new."""
    if view.header(b"etag") is not None:
        view.set_header(b"ETag", b'"%s"' % hashlib.md5(view.body, usedforsecurity=False).hexdigest().encode())


def write_json(view: ResponseView, doc: Any) -> None:
    view.body = orjson.dumps(doc)
    view.set_header(b"ETag", None)  # a validator of the registry's bytes, not of these


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryFault(Fault):
    """A fault on MLflow registry calls: ``models`` picks the registered models it acts on."""

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("models", "string_list", default=None,
              help="Registered model names (globs) to act on; default every model."),
    )

    models: tuple[str, ...] | None = None
    facts: RegistryFacts = field(default_factory=RegistryFacts, compare=False, repr=False)

    def registry_call(self, ctx: FaultContext) -> RegistryCall | None:
        """The call ``ctx`` makes; learns from download-URI answers on the way (they say where files live)."""
        call = classify(ctx.method, ctx.target, ctx.request_body() if ctx.method == "POST" else None)
        if call is None:
            return None
        if call.kind in (ARTIFACT, ARTIFACT_LIST) and call.path is not None:
            owner = self.facts.version_of(call.path)
            if owner is not None:
                call.name, call.version, _ = owner
        elif call.kind == "download_uri":
            facts = self.facts

            def learn(view: ResponseView) -> None:
                facts.learn(call, read_json(view))

            ctx.on_response(learn)
        return call

    def wants(self, name: str | None) -> bool:
        if self.models is None:
            return True
        return name is not None and any(fnmatch.fnmatchcase(name, g) for g in self.models)

    def audit(self, call: RegistryCall, *, asked: str | None, served: str | None, **detail: Any) -> None:
        """One ``registry_fault`` line: which fault, which call, the model, the version asked for and served."""
        event("registry_fault", fault=self.type, call=call.kind, model=call.name, asked=asked, served=served,
              **detail)
