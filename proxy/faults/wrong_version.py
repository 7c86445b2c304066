"""``wrong_version``: the request reaches another version of the model, as when a registry points wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.v2_grpc import GRPC_INFER_PATH
from ..payload.wire import set_string
from .base import Fault, FaultContext, Outcome

# /v2/models/<m>[/versions/<v>]/infer and /v1/models/<m>[/versions/<v>]:<verb> (TF Serving's form).
_V2 = re.compile(r"^(?P<pre>.*/v2/models/[^/]+)(?:/versions/[^/]+)?(?P<post>/infer.*)$")
# ModelInferRequest.model_version (grpc_predict_v2.proto).
MODEL_VERSION = 2
_V1 = re.compile(r"^(?P<pre>.*/v1/models/[^/:]+)(?:/versions/[^/:]+)?(?P<post>:.*)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class WrongVersion(Fault):
    type: ClassVar[str] = "wrong_version"
    HELP: ClassVar[str] = ("Serve another model version: rewrite the version in V2 and V1 paths (a gRPC "
                           "ModelInferRequest's model_version) to `version`, and/or send the request to the "
                           "alternate upstream `upstream`.")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("version", "string", default=None, help="The version the path names instead."),
        Field("upstream", "string", default=None, help="A name from `upstreams` serving the other version."),
    )

    version: str | None = None
    upstream: str | None = None

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        version = values["version"]
        if version is None and values["upstream"] is None:
            errors.add(path, "wrong_version needs version or upstream")
            return None
        if version is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", version):
            errors.add(f"{path}.version", "letters, digits, '.', '_' and '-' only")
            return None
        return cls(**values)

    def upstream_refs(self) -> tuple[str, ...]:
        return (self.upstream,) if self.upstream else ()

    def apply(self, ctx: FaultContext) -> Outcome:
        if self.upstream is not None:
            ctx.upstream_name = self.upstream
        if self.version is not None and GRPC_INFER_PATH.match(ctx.path):
            body = ctx.request_body()
            if body is not None:
                try:
                    ctx.replace_request_body(set_string(body, MODEL_VERSION, self.version))
                except ValueError:  # not a protobuf message: it goes as it came
                    ctx.count_unparsed("request")
        elif self.version is not None:
            target = ctx.target
            path, sep, query = target.partition("?")
            m = _V2.match(path) or _V1.match(path)
            if m is not None:
                ctx.set_target(f"{m['pre']}/versions/{self.version}{m['post']}{sep}{query}")
        return None
