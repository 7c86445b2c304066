"""MLflow model registry and artifact store REST API: what a call asks for, and where its answer keeps versions.

Registry answers are records, not feature tables: this adapter is detected from the path like the others (so a
policy can say ``format: mlflow_registry`` and the registry's paths are known in one place), reads no table, and
gives the registry faults what they need instead:

- ``classify(method, target, body)``: which call (``RegistryCall.kind``), for which model, version, alias or
  artifact path. The load sequence of ``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` (MLflow 3) is:
  ``alias`` -> ``model`` -> ``download_uri`` -> ``artifact_list`` (twice) -> ``artifact`` per file
  (MLmodel first); ``models:/NAME/latest`` asks ``latest`` (POST, name in the JSON body) instead of ``alias``.
- ``version_records(kind, doc)``: the model-version records inside an answer, to read or change in place;
- ``artifact_prefix(uri)``: the artifact API path under which a version's files are served;
- ``drop_blocks`` / ``top_blocks``: the MLmodel file (YAML) edited by its top-level keys, line by line, so
  that everything else keeps its bytes.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs, quote, unquote, urlencode

import orjson

from ..table import FeatureTable
from .base import DEFAULT_OPTIONS, RESPONSE, AdapterOptions, BaseAdapter, Parsed, Predictions

__all__ = [
    "ARTIFACT", "ARTIFACT_LIST", "MLMODEL", "MlflowRegistryAdapter", "RegistryCall", "artifact_prefix",
    "artifact_target", "classify", "drop_blocks", "top_blocks", "version_records", "version_target", "with_query",
]

_PATH = re.compile(r"/(?:ajax-)?api/2\.0/(?:mlflow/(?:registered-models|model-versions)/|mlflow-artifacts/artifacts)")
_REGISTRY = re.compile(r"/(?:ajax-)?api/2\.0/mlflow/(registered-models|model-versions)/([a-z-]+)$")
_ARTIFACTS = re.compile(r"/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts(?:/(.*))?$")
# (registry object, verb) -> kind; calls not listed are "other" (create, update, delete, tags ...).
_KINDS: Final = {
    ("registered-models", "alias"): "alias",
    ("registered-models", "get"): "model",
    ("registered-models", "get-latest-versions"): "latest",
    ("registered-models", "search"): "search_models",
    ("model-versions", "get"): "version",
    ("model-versions", "get-download-uri"): "download_uri",
    ("model-versions", "search"): "search_versions",
}
ARTIFACT: Final = "artifact"
ARTIFACT_LIST: Final = "artifact_list"
MLMODEL: Final = "MLmodel"


class RegistryCall:
    """One registry or artifact call: ``kind`` (alias, model, latest, version, download_uri, search_models,
    search_versions, artifact, artifact_list, other), the model ``name``, ``version`` and ``alias`` it names,
    and for artifacts the ``path`` under the artifact root (unquoted)."""

    __slots__ = ("alias", "kind", "name", "path", "version")

    def __init__(self, kind: str, name: str | None = None, version: str | None = None, alias: str | None = None,
                 path: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.version = version
        self.alias = alias
        self.path = path

    def __repr__(self) -> str:
        return f"RegistryCall({self.kind!r}, name={self.name!r}, version={self.version!r}, alias={self.alias!r}, " \
               f"path={self.path!r})"


def classify(method: str, target: str, body: bytes | None = None) -> RegistryCall | None:
    """The call a request makes, or None when its path is not the registry's or the artifact store's."""
    path, _, query = target.partition("?")
    args = {k: v[0] for k, v in parse_qs(query).items()} if query else {}
    m = _REGISTRY.search(path)
    if m is not None:
        kind = _KINDS.get((m[1], m[2]), "other")
        if method == "POST" and body:
            # get-latest-versions is a POST with {"name": ..., "stages": [...]}.
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict):
                args.update({k: v for k, v in doc.items() if isinstance(v, str)})
        return RegistryCall(kind, args.get("name"), args.get("version"), args.get("alias"))
    m = _ARTIFACTS.search(path)
    if m is None:
        return None
    if m[1]:
        return RegistryCall(ARTIFACT, path=unquote(m[1]))
    return RegistryCall(ARTIFACT_LIST, path=args.get("path", ""))


def version_records(kind: str, doc: Any) -> list[dict[str, Any]]:
    """The model-version records of an answer of ``kind``, as the objects inside ``doc`` (change them in place)."""
    if not isinstance(doc, dict):
        return []
    if kind in ("alias", "version"):
        found = [doc.get("model_version")]
    elif kind in ("latest", "search_versions"):
        found = doc.get("model_versions") or []
    elif kind == "model":
        found = (doc.get("registered_model") or {}).get("latest_versions") or []
    elif kind == "search_models":
        found = [v for rm in doc.get("registered_models") or [] if isinstance(rm, dict)
                 for v in rm.get("latest_versions") or []]
    else:
        return []
    return [r for r in found if isinstance(r, dict) and isinstance(r.get("version"), str)]


def artifact_prefix(uri: str) -> str | None:
    """The path the artifact API serves a download URI's files under: ``mlflow-artifacts:/0/models/m-1/artifacts``
    -> ``0/models/m-1/artifacts``; None for a URI the artifact API does not serve (s3:, file:, a local path)."""
    if uri.startswith("mlflow-artifacts:"):
        rest = uri[len("mlflow-artifacts:"):]
        if rest.startswith("//"):  # mlflow-artifacts://host:port/path
            rest = rest[2:].partition("/")[2]
        return rest.strip("/") or None
    return None


def with_query(target: str, **params: str) -> str:
    """``target`` with these query parameters set (the others kept, in their order)."""
    path, _, query = target.partition("?")
    pairs = [(k, v[0]) for k, v in parse_qs(query, keep_blank_values=True).items() if k not in params]
    return f"{path}?{urlencode([*pairs, *params.items()])}"


def version_target(target: str, name: str, version: str) -> str:
    """The ``model-versions/get`` call for ``name`` and ``version``, on the API root of ``target``'s call."""
    path = target.partition("?")[0]
    m = _REGISTRY.search(path)
    assert m is not None
    return f"{path[: m.start(1)]}model-versions/get?{urlencode({'name': name, 'version': version})}"


def artifact_target(target: str, call: RegistryCall, path: str) -> str:
    """The target of the same artifact call (a file, or a listing) for another ``path``."""
    if call.kind == ARTIFACT_LIST:
        return with_query(target, path=path)
    m = _ARTIFACTS.search(target.partition("?")[0])
    assert m is not None and call.kind == ARTIFACT
    query = target.partition("?")[2]
    return target[: m.start(1)] + quote(path) + (f"?{query}" if query else "")


# -- the MLmodel file: top-level YAML keys start at column 0; their blocks run to the next one.
def top_blocks(text: str) -> list[tuple[str, int, int]]:
    """Each top-level key of a YAML document with the line range of its block: (key, first, end)."""
    lines = text.split("\n")
    out: list[tuple[str, int, int]] = []
    for i, line in enumerate(lines):
        if line and not line[0].isspace() and line[0] not in "#-" and ":" in line:
            if out:
                out[-1] = (out[-1][0], out[-1][1], i)
            out.append((line.split(":", 1)[0].strip(), i, len(lines)))
    return out


def drop_blocks(text: str, keys: frozenset[str] | set[str]) -> str:
    """``text`` without the top-level ``keys`` and their blocks; unchanged (the same object) when it has none."""
    blocks = [(a, b) for key, a, b in top_blocks(text) if key in keys]
    if not blocks:
        return text
    lines = text.split("\n")
    for a, b in reversed(blocks):
        del lines[a:b]
    return "\n".join(lines)


class MlflowRegistryAdapter(BaseAdapter):
    name: ClassVar[str] = "mlflow_registry"
    HELP: ClassVar[str] = ("MLflow model registry and artifact store (/api/2.0/mlflow/registered-models/*, "
                           "/model-versions/*, /mlflow-artifacts/artifacts*): for the registry faults, no features.")
    PATH: ClassVar[re.Pattern[str] | None] = _PATH
    READS: ClassVar[frozenset[str]] = frozenset({RESPONSE})

    # Registry records carry no feature table: feature and prediction faults pass these bodies through.
    def read_strict(self, doc: Any, options: AdapterOptions) -> Parsed | None:
        return None

    def write(self, parsed: Parsed, table: FeatureTable, options: AdapterOptions = DEFAULT_OPTIONS) -> Any:
        return parsed.doc

    def predictions_strict(self, doc: Any, options: AdapterOptions) -> Predictions | None:
        return None

    def write_predictions_strict(self, doc: Any, preds: Predictions, options: AdapterOptions) -> Any | None:
        return None
