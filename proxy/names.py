"""Names the sidecar shares with the tools that talk to it (Locust, the gate, the report, the demo driver).

A leaf module: importing it loads nothing else, so a load generator reads cohort names without importing the
sidecar's compiled modules and numpy (that import cost Locust's short runs their first second, measured).
"""

from __future__ import annotations

from typing import Final

__all__ = ["COHORTS", "COHORT_NAMES"]

# The two cohorts an experiment compares, by index: metric labels, report keys, prediction windows.
COHORT_NAMES: Final = ("chaos", "control")
# Every cohort a request can land in, by index (the last: matched no experiment, or left untouched).
COHORTS: Final = (*COHORT_NAMES, "none")
