"""Policies: the YAML file that says which traffic gets which faults, compiled once into frozen objects."""

from __future__ import annotations

from .errors import PolicyError
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
from .units import Address

__all__ = [
    "BUCKETS", "Address", "AdminSettings", "CohortOverride", "DailyWindow", "Experiment", "KillSwitch", "Limits",
    "Match", "ObserveSpec", "PayloadSpec", "Policy", "PolicyError", "Reveal", "Schedule", "ShadowSpec", "StickyKey",
    "Timeouts", "Upstream", "Webhook", "compile_glob", "compile_policy", "load_policy_file", "load_policy_text",
    "policy_schema",
]

# The kill switch's guard registry, now that this package is whole: the guard modules declare their policy
# fields with .fields, and KillSwitch reads the registry; imported here, a policy's first load does not pay it.
from ..killswitch import registry as _registry  # noqa: F401
