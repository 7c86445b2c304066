"""Fixtures for the tests of the declarations (as in tests/policy). The Hypothesis profiles ("fast", "deep"
via HYPOTHESIS_PROFILE) are registered once for the whole suite in tests/conftest.py."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def jsonschema() -> Any:
    """The jsonschema package, or a skip where it is not installed (it is not a declared dependency)."""
    return pytest.importorskip("jsonschema")
