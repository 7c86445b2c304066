"""``corrupt_artifact``: a model's file arrives damaged, truncated or with bytes flipped, so loading it fails.

Model files are often larger than ``limits.inspect_body_bytes``, so this is a stream hook: each upstream read is
changed as it passes, nothing is buffered. ``flip`` inverts ``count`` bytes spread over the file (the first one
always: a pickle's protocol byte, a zip's or an ONNX file's magic), keeping its length; ``truncate`` sends the
first ``keep`` share of the file (of its Content-Length; without one, of the first read) as a complete answer.
The ETag goes (it validated the registry's bytes). The registry's own copy is untouched.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from ..payload.adapters.mlflow_registry import ARTIFACT, RegistryCall
from .base import FaultContext, Outcome, ResponseView, StreamStep
from .registry_base import RegistryFault

__all__ = ["CorruptArtifact"]

# The files a model's weights live in, by flavour: pickles (sklearn, pyfunc), skops, joblib, PyTorch, Keras,
# ONNX, safetensors, XGBoost/LightGBM; MLmodel and the environment files are left alone.
MODEL_FILES = ("*.pkl", "*.pickle", "*.joblib", "*.skops", "*.pt", "*.pth", "*.keras", "*.h5", "*.onnx",
               "*.safetensors", "*.ubj", "*.xgb", "*.lgb", "*.bin", "*.pb")


class _Corrupter:
    """The stream hook of one download."""

    __slots__ = ("count", "fault", "keep", "mode", "seen", "sent", "step", "total", "call")

    def __init__(self, fault: CorruptArtifact, call: RegistryCall) -> None:
        self.fault = fault
        self.call = call
        self.mode = fault.mode
        self.keep = fault.keep
        self.count = fault.count
        self.seen = 0  # bytes of the body read so far
        self.sent = 0  # bytes let through (truncate)
        self.total: int | None = None
        self.step = 1

    def head(self, view: ResponseView) -> None:
        if view.status != 200:
            self.mode = "pass"
            return
        length = view.header(b"content-length")
        self.total = int(length) if length is not None and length.strip().isdigit() else None
        view.set_header(b"ETag", None)
        if self.total is not None:
            # count positions evenly spread: 0, step, 2*step ...
            self.step = max(1, self.total // self.count)
        self.fault.audit(self.call, asked=self.call.version, served=self.call.version, path=self.call.path,
                         mode=self.mode, size=self.total)

    def chunk(self, data: bytes) -> StreamStep:
        start = self.seen
        self.seen += len(data)
        if self.mode == "flip":
            out = bytearray(data)
            step = self.step
            first = -(-start // step) * step  # the first flipped position at or after start
            for pos in range(first, min(self.seen, self.count * step), step):
                out[pos - start] ^= 0xFF
            return bytes(out)
        if self.mode == "truncate":
            total = self.total if self.total is not None else len(data)
            limit = int(total * self.keep)
            if self.total is None:
                self.total = total
            room = max(0, limit - self.sent)
            self.sent += min(room, len(data))
            return data[:room] if room < len(data) else data
        return data

    def end(self) -> StreamStep:
        return b""


@dataclass(frozen=True, slots=True, kw_only=True)
class CorruptArtifact(RegistryFault):
    type: ClassVar[str] = "corrupt_artifact"
    HELP: ClassVar[str] = ("Damage a model file downloaded from the artifact store: flip `count` bytes, or truncate "
                           "it to `keep` of its length; streamed, whatever its size.")
    FIELDS: ClassVar[tuple[Field, ...]] = (*RegistryFault.FIELDS,
        Field("mode", "choice", default="flip", choices=("flip", "truncate"), help="flip bytes, or truncate."),
        Field("count", "integer", default=16, minimum=1, maximum=1_000_000, help="flip: how many bytes."),
        Field("keep", "probability", default=0.5, help="truncate: the share of the file sent."),
        Field("files", "string_list", default=MODEL_FILES, help="File names (globs) damaged; default model files."),
    )

    mode: str = "flip"
    count: int = 16
    keep: float = 0.5
    files: tuple[str, ...] = MODEL_FILES

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values)

    def apply(self, ctx: FaultContext) -> Outcome:
        call = self.registry_call(ctx)
        if call is None or call.kind != ARTIFACT or call.path is None:
            return None
        name = call.path.rsplit("/", 1)[-1]
        if not any(fnmatch.fnmatchcase(name, g) for g in self.files):
            return None
        if self.models is not None and not self.wants(call.name):
            return None
        ctx.on_stream(_Corrupter(self, call))
        return None
