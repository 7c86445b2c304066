"""A small MLflow registry in memory, answering the calls of MLflow 3's load sequence with the real server's
shapes (taken from mlflow server 3.17), and a FaultContext that runs a fault on one call against it.

Used by the unit and property tests of the registry faults: the fault's request rewrites (``set_target``) pick
what the registry answers, and its response and stream hooks run on that answer, as the exchange runs them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from proxy.faults.base import Fault, Reply, ResponseHook, ResponseView, StreamHook
from proxy.payload.bodies import ExchangePayload

ROOT = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def mlmodel(version: int, signed: bool) -> str:
    lines = [
        f"artifact_path: mlflow-artifacts:/0/models/m-{version:04d}/artifacts",
        "flavors:",
        "  python_function:",
        "    loader_module: mlflow.sklearn",
        "    model_path: model.pkl",
        "  sklearn:",
        "    pickled_model: model.pkl",
        f"model_id: m-{version:04d}",
        f"run_id: run{version:04d}",
    ]
    if signed:
        lines += ["saved_input_example_info:", "  artifact_path: input_example.json", "  type: dataframe",
                  "signature:", "  inputs: '[{\"type\": \"double\", \"name\": \"a\"}]'", "  outputs: null"]
    lines.append("utc_time_created: '2026-12-04 23:59:02'")
    return "\n".join(lines) + "\n"


@dataclass
class FakeRegistry:
    """``n`` versions of model ``name``; ``aliases`` alias -> version. Version v's files live under
    ``0/models/m-000v/artifacts`` (its source is ``models:/m-000v``), its run is ``run000v``."""

    n: int
    aliases: dict[str, int]
    name: str = "fraud"
    signed: tuple[int, ...] = ()
    calls: list[str] = field(default_factory=list)

    def record(self, v: int) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "name": self.name, "version": str(v), "current_stage": "None", "description": f"version {v}",
            "source": f"models:/m-{v:04d}", "run_id": f"run{v:04d}", "status": "READY",
            "tags": [{"key": "validated", "value": str(v)}, {"key": "owner", "value": "team"}], "run_link": "",
        }
        mine = sorted(a for a, av in self.aliases.items() if av == v)
        if mine:
            rec["aliases"] = mine
        return rec

    def prefix(self, v: int) -> str:
        return f"0/models/m-{v:04d}/artifacts"

    def files(self, v: int) -> dict[str, bytes]:
        return {"MLmodel": mlmodel(v, v in self.signed).encode(), "model.pkl": bytes([0x80, 5]) + b"P" * 4000 + b"."}

    def answer(self, method: str, target: str, body: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        self.calls.append(f"{method} {target}")
        path, _, query = target.partition("?")
        args = {k: v[0] for k, v in parse_qs(query).items()}
        if method == "POST" and body:
            args.update(json.loads(body))
        if path.startswith(ARTIFACTS):
            rel = unquote(path[len(ARTIFACTS) + 1:]) if len(path) > len(ARTIFACTS) else args.get("path", "")
            for v in range(1, self.n + 1):
                prefix = self.prefix(v)
                if rel == prefix and len(path) == len(ARTIFACTS):
                    files = [{"path": k, "is_dir": False, "file_size": len(b)} for k, b in self.files(v).items()]
                    return self.json({"files": files})
                if rel.startswith(prefix + "/") and rel[len(prefix) + 1:] in self.files(v):
                    data = self.files(v)[rel[len(prefix) + 1:]]
                    etag = b'"%s"' % hashlib.md5(data, usedforsecurity=False).hexdigest().encode()
                    return 200, [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(data)),
                                 (b"etag", etag)], data
            return self.error(404, "RESOURCE_DOES_NOT_EXIST", f"File {rel} not found")
        verb = path[len(ROOT) + 1:]
        if args.get("name") != self.name:
            return self.error(404, "RESOURCE_DOES_NOT_EXIST",
                              f"Registered Model with name={args.get('name')} not found")
        version = args.get("version")
        number = int(version) if version and version.isdigit() and 1 <= int(version) <= self.n else None
        if verb == "registered-models/alias":
            alias_version = self.aliases.get(args.get("alias", ""))
            if alias_version is None:
                return self.error(400, "INVALID_PARAMETER_VALUE",
                                  f"Registered model alias {args.get('alias')} not found.")
            return self.json({"model_version": self.record(alias_version)})
        if verb == "registered-models/get":
            latest = self.record(self.n)
            latest.pop("aliases", None)
            return self.json({"registered_model": {
                "name": self.name, "latest_versions": [latest],
                "aliases": [{"alias": a, "version": str(av)} for a, av in sorted(self.aliases.items())]}})
        if verb == "registered-models/get-latest-versions":
            latest = self.record(self.n)
            latest.pop("aliases", None)
            return self.json({"model_versions": [latest]})
        if number is None:
            return self.error(404, "RESOURCE_DOES_NOT_EXIST",
                              f"Model Version (name={self.name}, version={version}) not found")
        if verb == "model-versions/get":
            return self.json({"model_version": self.record(number)})
        if verb == "model-versions/get-download-uri":
            return self.json({"artifact_uri": f"mlflow-artifacts:/{self.prefix(number)}"})
        return self.error(404, "ENDPOINT_NOT_FOUND", verb)

    @staticmethod
    def json(doc: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        body = json.dumps(doc, indent=2).encode()
        return 200, [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))], body

    @staticmethod
    def error(status: int, code: str, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        body = json.dumps({"error_code": code, "message": message}).encode()
        return status, [(b"content-type", b"application/json")], body


class Ctx:
    """The FaultContext of one call (the parts registry faults use)."""

    upstream_name: str | None = None
    throttle_bps: float | None = None

    def __init__(self, method: str, target: str, body: bytes | None = None, client: bytes | None = b"c1") -> None:
        self.method, self.target, self.body, self.client = method, target, body, client
        self.hooks: list[ResponseHook] = []
        self.streams: list[StreamHook] = []

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def header(self, name: bytes) -> bytes | None:
        return None

    def request_body(self) -> bytes | None:
        return self.body

    def replace_request_body(self, body: bytes) -> None:
        self.body = body

    def set_request_header(self, name: bytes, value: bytes) -> None:
        raise AssertionError("registry faults change no request header")

    def set_target(self, target: str) -> None:
        assert target.startswith("/")
        self.target = target

    def payload(self) -> ExchangePayload:
        raise AssertionError("registry faults read no feature payload")

    def sticky_value(self) -> bytes | None:
        return self.client

    def count_unparsed(self, direction: str) -> None:
        pass

    def on_response(self, hook: ResponseHook) -> None:
        self.hooks.append(hook)

    def on_stream(self, hook: StreamHook) -> None:
        self.streams.append(hook)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    upstream_target: str
    reply: Reply | None = None

    def json(self) -> Any:
        return json.loads(self.body)


def through(faults: list[Fault], registry: FakeRegistry, method: str, target: str, body: bytes | None = None,
            client: bytes | None = b"c1", read_size: int = 1000) -> Answer:
    """One call through ``faults`` (in order, as an experiment runs them) to ``registry``: what the client gets."""
    ctx = Ctx(method, target, body, client)
    for fault in faults:
        outcome = fault.apply(ctx)
        if isinstance(outcome, Reply):
            return Answer(outcome.status, dict(outcome.headers), outcome.body, "", outcome)
        assert outcome is None
    status, headers, data = registry.answer(ctx.method, ctx.target, ctx.body)
    view = ResponseView(status, headers, data)
    for hook in ctx.hooks:
        hook(view)
    if ctx.streams:
        for s in ctx.streams:
            s.head(view)
        out = []
        for i in range(0, len(view.body), read_size):  # the body as upstream reads of read_size bytes
            piece = view.body[i:i + read_size]
            for s in ctx.streams:
                step = s.chunk(piece)
                assert isinstance(step, bytes), step  # the registry faults rewrite bytes; they never hold or cut
                piece = step
            out.append(piece)
        view.body = b"".join(out)
    hdrs = {n.decode().lower(): v.decode() for n, v in view.headers}
    return Answer(view.status, hdrs, view.body, ctx.target)
