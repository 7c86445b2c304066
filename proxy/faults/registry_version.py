"""``registry_version``: an alias or a latest-version lookup resolves to another version, as in a bad redeploy.

The registry's data is never touched; its answers to the cohort are. A lookup that resolves a version (the
alias call, ``registered-models/get``'s aliases and latest versions, ``get-latest-versions``) answers with the
other version, and what follows agrees with it:

- the record served is the other version's own (source, run id, tags): an alias lookup asks the registry for
  it straight away when the version to serve is known before the answer (a fixed ``version``; with
  ``offset``, once an answer has said where the alias points), and a latest lookup uses it once an answer has
  carried it; before that, the true record comes back renumbered (MLflow's loader uses only the number);
- the alias moves in every record: off the true version's ``aliases``, onto the served one's;
- per client (the experiment's sticky key), the rewrite is remembered: that client's requests for the true
  version's download URI, and for the files under the true version's artifact path (which a client derives
  from a record's source or run id), are sent to the served version's instead.

So ``mlflow.pyfunc.load_model("models:/NAME@champion")`` quietly loads the other version, which is what a bad
redeploy does; a half-rewritten answer would make MLflow's client fail loudly instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.mlflow_registry import (
    ARTIFACT,
    ARTIFACT_LIST,
    RegistryCall,
    artifact_target,
    version_records,
    version_target,
    with_query,
)
from .base import FaultContext, Outcome, ResponseView
from .registry_base import Bounded, RegistryFault, read_json, write_json

__all__ = ["RegistryVersion", "Rewrite"]


@dataclass(slots=True)
class Rewrite:
    """A lookup that truly resolved to one version was told ``served``; ``aliases`` moved with it (empty for a
    latest-version lookup)."""

    served: str
    aliases: set[str]


# One client's view of one model: true version -> what it was told. A model's lookups of one client rewrite
# a few versions at most (its aliases and its latest): a bound, not a cache.
MAX_REWRITES_PER_MODEL = 64


class View(dict[str, Rewrite]):
    def served_versions(self) -> set[str]:
        return {rw.served for rw in self.values()}

    def redirect(self, version: str | None) -> str | None:
        """Where a request of this client for ``version``'s download URI or files goes instead; None: nowhere
        (not rewritten, or a version this client was told about, which it may ask for by number)."""
        rw = self.get(version) if version is not None else None
        if rw is None or version in self.served_versions():
            return None
        return rw.served


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryVersion(RegistryFault):
    type: ClassVar[str] = "registry_version"
    HELP: ClassVar[str] = (
        "An alias or latest-version lookup resolves to another version (`version`, or `offset` from the true "
        "one), consistently across the registry's answers and the artifact paths that follow.")
    FIELDS: ClassVar[tuple[Field, ...]] = (*RegistryFault.FIELDS,
        Field("version", "string", default=None, help="The version lookups resolve to instead."),
        Field("offset", "integer", default=None, help="Or: this many versions from the true one (-1: the previous)."),
        Field("aliases", "string_list", default=None, help="The aliases whose lookups change; default every alias."),
        Field("latest", "bool", default=True, help="Latest-version lookups (models:/NAME/latest) change too."),
    )

    version: str | None = None
    offset: int | None = None
    aliases: tuple[str, ...] | None = None
    latest: bool = True
    # (sticky key value, model) -> what that client was told.
    rewrites: Bounded[tuple[bytes | None, str], View] = field(default_factory=Bounded, compare=False, repr=False)

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        if (values["version"] is None) == (values["offset"] is None):
            errors.add(path, "registry_version needs exactly one of version and offset")
            return None
        if values["version"] is not None and not values["version"].isdigit():
            errors.add(f"{path}.version", "a registry version is a number, e.g. \"1\"")
            return None
        if values["offset"] == 0:
            errors.add(f"{path}.offset", "0 is the true version: use -1 for the previous one")
            return None
        return cls(**values)

    def served(self, asked: str) -> str | None:
        """The version a lookup that truly resolves to ``asked`` answers with; None: no other version."""
        if self.version is not None:
            return self.version if self.version != asked else None
        if not asked.isdigit() or self.offset is None:
            return None
        n = int(asked) + self.offset
        return str(n) if n >= 1 else None

    def apply(self, ctx: FaultContext) -> Outcome:
        call = self.registry_call(ctx)
        if call is None or (call.kind not in (ARTIFACT, ARTIFACT_LIST) and not self.wants(call.name)):
            return None
        kind = call.kind
        client = ctx.sticky_value()
        if kind == "alias":
            if call.alias is None or (self.aliases is not None and call.alias not in self.aliases):
                return None
            self._alias(ctx, call, client)
        elif kind in ("model", "search_models", "latest"):
            if kind == "latest" and not self.latest:
                return None
            ctx.on_response(lambda view: self._lookup(view, call, client))
        elif kind in ("version", "search_versions"):
            ctx.on_response(lambda view: self._records(view, call, client))
        elif kind == "download_uri" and call.name is not None:
            told = self.rewrites.find((client, call.name))
            served = told.redirect(call.version) if told is not None else None
            if served is not None:
                ctx.set_target(with_query(ctx.target, version=served))
                self.audit(call, asked=call.version, served=served)
        elif kind in (ARTIFACT, ARTIFACT_LIST) and call.name is not None and self.wants(call.name):
            self._artifact(ctx, call, client)
        return None

    # -- lookups: the version they resolve to changes
    def _alias(self, ctx: FaultContext, call: RegistryCall, client: bytes | None) -> None:
        """An alias lookup. When the version to serve is known before the answer (a fixed ``version``, or the
        alias's true version learned from an earlier answer), the registry is asked for that version's record
        instead, so the client gets its real record (source, run id, tags) from the first call; otherwise the
        true record comes back renumbered."""
        assert call.name is not None and call.alias is not None
        asked = self.facts.aliases.find((call.name, call.alias))
        served = self.version if self.version is not None else self.served(asked) if asked is not None else None
        if served is None or served == asked:
            ctx.on_response(lambda view: self._lookup(view, call, client))
            return
        ctx.set_target(version_target(ctx.target, call.name, served))
        alias, name = call.alias, call.name

        def resolved(view: ResponseView) -> None:
            doc = read_json(view)
            record = doc.get("model_version") if isinstance(doc, dict) else None
            if not isinstance(record, dict):  # e.g. 404: the version served does not exist, and the client says so
                self.audit(call, asked=asked, served=served, status=view.status)
                return
            self.facts.learn_record(record)
            record["aliases"] = sorted({*(record.get("aliases") or ()), alias})
            if asked is not None:
                self._remember(client, name, asked, served, {alias})
            write_json(view, doc)
            self.audit(call, asked=asked, served=served, alias=alias)

        ctx.on_response(resolved)

    def _lookup(self, view: ResponseView, call: RegistryCall, client: bytes | None) -> None:
        doc = read_json(view)
        if doc is None:
            return
        self.facts.learn(call, doc)
        changed: list[tuple[Any, str, str | None]] = []
        if call.kind == "alias":
            record = doc.get("model_version")
            if isinstance(record, dict) and call.alias is not None:
                asked = record.get("version")
                served = self._serve(record, client, {call.alias})
                if served is not None:
                    doc["model_version"] = served
                    changed.append((asked, served["version"], call.alias))
        elif call.kind in ("model", "search_models"):
            models = [doc.get("registered_model")] if call.kind == "model" else doc.get("registered_models") or []
            for rm in models:
                if isinstance(rm, dict) and self.wants(rm.get("name")):
                    changed += self._registered_model(rm, client)
        elif call.kind == "latest":
            versions = doc.get("model_versions") or []
            for i, record in enumerate(versions):
                asked = record.get("version") if isinstance(record, dict) else None
                served = self._serve(record, client, set()) if isinstance(record, dict) else None
                if served is not None:
                    versions[i] = served
                    changed.append((asked, served["version"], None))
        if changed:
            write_json(view, doc)
            for asked, served_version, alias in changed:
                self.audit(call, asked=asked, served=served_version, alias=alias)

    def _registered_model(self, rm: dict[str, Any], client: bytes | None) -> list[tuple[Any, str, str | None]]:
        name = rm.get("name")
        if not isinstance(name, str):
            return []
        changed: list[tuple[Any, str, str | None]] = []
        for entry in rm.get("aliases") or []:
            alias, asked = entry.get("alias"), entry.get("version")
            if not isinstance(asked, str) or (self.aliases is not None and alias not in self.aliases):
                continue
            served = self.served(asked)
            if served is not None:
                entry["version"] = served
                self._remember(client, name, asked, served, {alias})
                changed.append((asked, served, alias))
        if self.latest:
            latest = rm.get("latest_versions") or []
            for i, record in enumerate(latest):
                asked = record.get("version") if isinstance(record, dict) else None
                served_record = self._serve(record, client, set()) if isinstance(record, dict) else None
                if served_record is not None:
                    latest[i] = served_record
                    changed.append((asked, served_record["version"], None))
        return changed

    def _serve(self, record: dict[str, Any], client: bytes | None, aliases: set[str]) -> dict[str, Any] | None:
        """The record a lookup that resolved to ``record`` answers with, or None to leave it."""
        name, asked = record.get("name"), record.get("version")
        if not isinstance(name, str) or not isinstance(asked, str):
            return None
        served = self.served(asked)
        if served is None:
            return None
        self._remember(client, name, asked, served, aliases)
        known = self.facts.records.find((name, served))
        out = dict(known) if known is not None else record
        out["version"] = served
        kept = [a for a in (known or {}).get("aliases") or [] if a not in aliases]
        if aliases or kept:
            out["aliases"] = sorted({*kept, *aliases})
        elif "aliases" in out:
            del out["aliases"]
        return out

    def _remember(self, client: bytes | None, name: str, asked: str, served: str, aliases: set[str]) -> None:
        key = (client, name)
        told = self.rewrites.find(key)
        if told is None:
            told = View()
            self.rewrites.put(key, told)
        rw = told.get(asked)
        if rw is not None and rw.served == served:
            rw.aliases |= aliases
        elif rw is not None or len(told) < MAX_REWRITES_PER_MODEL:
            told[asked] = Rewrite(served, set(aliases))

    # -- records asked for by number: only the aliases move
    def _records(self, view: ResponseView, call: RegistryCall, client: bytes | None) -> None:
        doc = read_json(view)
        if doc is None:
            return
        records = version_records(call.kind, doc)
        changed = False
        for record in records:
            self.facts.learn_record(record)
            told = self.rewrites.find((client, record["name"])) if isinstance(record.get("name"), str) else None
            if told is None:
                continue
            aliases = set(record.get("aliases") or [])
            version = record["version"]
            moved_off = told[version].aliases if version in told else set()
            moved_on = {a for rw in told.values() if rw.served == version for a in rw.aliases}
            new = (aliases - moved_off) | moved_on
            if new != aliases:
                changed = True
                if new:
                    record["aliases"] = sorted(new)
                else:
                    record.pop("aliases", None)
        if changed:
            write_json(view, doc)

    # -- the files: the true version's artifact paths lead to the served version's
    def _artifact(self, ctx: FaultContext, call: RegistryCall, client: bytes | None) -> None:
        assert call.name is not None and call.path is not None
        told = self.rewrites.find((client, call.name))
        served = told.redirect(call.version) if told is not None else None
        if served is None:
            return
        prefix = self.facts.prefix.find((call.name, served))
        owner = self.facts.version_of(call.path)
        if prefix is None or owner is None:
            return
        rest = owner[2]
        ctx.set_target(artifact_target(ctx.target, call, f"{prefix}/{rest}" if rest else prefix))
        self.audit(call, asked=call.version, served=served, path=call.path)
