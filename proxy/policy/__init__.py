"""Policies: the YAML file that says which traffic gets which faults, compiled once into frozen objects."""

from __future__ import annotations

from ..declare.errors import PolicyError
from ..declare.units import Address
from .loader import compile_glob, compile_policy, load_policy_file, load_policy_text
from .model import (
    BUCKETS,
    AdminSettings,
    CohortOverride,
    DailyWindow,
    Experiment,
    KillSwitch,
    Limits,
    Match,
    ObserveSpec,
    PayloadSpec,
    Policy,
    Reveal,
    Schedule,
    ShadowSpec,
    StickyKey,
    Timeouts,
    Upstream,
    Webhook,
)
from .schema import policy_schema

__all__ = [
    "BUCKETS", "Address", "AdminSettings", "CohortOverride", "DailyWindow", "Experiment", "KillSwitch", "Limits",
    "Match", "ObserveSpec", "PayloadSpec", "Policy", "PolicyError", "Reveal", "Schedule", "ShadowSpec", "StickyKey",
    "Timeouts", "Upstream", "Webhook", "compile_glob", "compile_policy", "load_policy_file", "load_policy_text",
    "policy_schema",
]
