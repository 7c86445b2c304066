"""The fault registry: the one place that maps a policy's ``type:`` to a fault class.

One module per fault; payload-aware faults register here the same way.
"""

from __future__ import annotations

from typing import Any

from ..declare.errors import Errors
from ..declare.fields import fields_schema, read_fields
from .abort import Abort
from .base import COMMON_FIELDS, Drop, Fault, FaultContext, Outcome, Reply, Wait
from .context_length import ContextLength
from .corrupt_artifact import CorruptArtifact
from .corrupt_response import CorruptResponse
from .default import Default
from .delay import Delay
from .drop import DropConnection
from .drop_feature import DropFeature
from .drop_system_prompt import DropSystemPrompt
from .duplicate_rows import DuplicateRows
from .empty_completion import EmptyCompletion
from .fallback import Fallback
from .feast_error import FeastError
from .first_token_delay import FirstTokenDelay
from .format_swap import FormatSwap
from .malformed_chunk import MalformedChunk
from .max_tokens_clamp import MaxTokensClamp
from .misalign import Misalign
from .nan import Nan
from .not_found import NotFound
from .out_of_range import OutOfRange
from .patch import Patch
from .perturb_predictions import PerturbPredictions
from .prompt_noise import PromptNoise
from .rate_limit import RateLimit
from .registry_version import RegistryVersion
from .rename_feature import RenameFeature
from .reorder_features import ReorderFeatures
from .reorder_rows import ReorderRows
from .scramble_metadata import ScrambleMetadata
from .shift import Shift
from .stale import Stale
from .stale_object import StaleObject
from .stall import Stall
from .status import Status
from .stream_error import StreamError
from .stream_stall import StreamStall
from .stream_truncate import StreamTruncate
from .strip_signature import StripSignature
from .throttle import Throttle
from .token_delay import TokenDelay
from .tool_call_corrupt import ToolCallCorrupt
from .truncate_batch import TruncateBatch
from .truncate_context import TruncateContext
from .type_swap import TypeSwap
from .wrong_version import WrongVersion

__all__ = ["FAULTS", "Drop", "Fault", "FaultContext", "Outcome", "Reply", "Wait", "fault_schemas", "parse_fault"]

FAULTS: dict[str, type[Fault]] = {
    cls.type: cls for cls in (
        # the request and the connection
        Abort, DropConnection, Delay, Stall, Throttle, Fallback, WrongVersion,
        # the features inside the payload
        Nan, OutOfRange, Shift, DropFeature, RenameFeature, ReorderFeatures, TypeSwap, Default, Stale, TruncateBatch,
        # the response
        Status, CorruptResponse, PerturbPredictions, Patch,
        # the model registry (MLflow): its answers and the model's files
        RegistryVersion, StripSignature, ScrambleMetadata, CorruptArtifact,
        # a data feed's table (CSV, JSON Lines, Parquet ... from an object store or a web server)
        ReorderRows, DuplicateRows, FormatSwap, StaleObject,
        # a Feast feature server's answer
        NotFound, Misalign, FeastError,
        # LLM APIs (OpenAI-compatible): the request, the answer, and the token stream
        RateLimit, ContextLength, DropSystemPrompt, TruncateContext, PromptNoise, MaxTokensClamp, EmptyCompletion,
        ToolCallCorrupt, FirstTokenDelay, TokenDelay, StreamStall, StreamTruncate, StreamError, MalformedChunk,
    )
}


def parse_fault(raw: object, path: str, errors: Errors) -> Fault | None:
    """One fault from its policy mapping; problems go to ``errors`` with their paths."""
    if not isinstance(raw, dict):
        errors.add(path, f"expected a mapping, got {type(raw).__name__}")
        return None
    kind = raw.get("type")
    cls = FAULTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        errors.add(f"{path}.type", f"unknown fault type {kind!r} (expected one of: {', '.join(sorted(FAULTS))})")
        return None
    before = len(errors.problems)
    values = read_fields(COMMON_FIELDS + cls.FIELDS, raw, path, errors)
    if values is None or len(errors.problems) > before:
        return None
    del values["type"]
    return cls.from_values(values, path, errors)


def fault_schemas() -> list[dict[str, Any]]:
    """One JSON Schema per fault type, to put under ``oneOf``."""
    out = []
    for name, cls in sorted(FAULTS.items()):
        schema = fields_schema(COMMON_FIELDS + cls.FIELDS, title=name, description=cls.HELP)
        schema["properties"]["type"] = {"const": name}
        out.append(schema)
    return out
