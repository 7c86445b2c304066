"""Routing: the facts of one request in, the experiment and cohort it belongs to out.

``Router`` is an immutable snapshot of the active experiments: the hot path walks it, and every change
(start, stop, schedule tick, reload, trip) builds a new one. It never writes into the request: what it decides
is an ``Assignment``, built once per experiment when the router is built, so that assigning allocates nothing.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Protocol

from .cohort import CHAOS, CONTROL, NONE, bucket_of, random_bucket, sticky_value

if TYPE_CHECKING:
    from .experiments import ExperimentState

__all__ = ["UNASSIGNED", "Assignment", "RequestFacts", "Router"]

_FORCED: Final = {b"chaos": CHAOS, b"control": CONTROL, b"none": NONE}


class RequestFacts(Protocol):
    """What routing reads of a request, whatever its protocol (an HTTP/1.1 request, a gRPC call)."""

    method: str

    @property
    def client_ip(self) -> bytes: ...
    cohort_header: bytes | None
    token_header: bytes | None
    experiment_header: bytes | None
    # A shadow twin (x-mlchaos-shadow): an upstream sidecar's "unchanged request", never faulted here.
    shadow: bool

    @property
    def path(self) -> str: ...

    @property
    def query(self) -> bytes: ...

    def header(self, name: bytes) -> bytes | None: ...

    def held_body(self) -> bytes | None: ...


class Assignment:
    """Where a request belongs: ``experiment`` and ``cohort`` (CHAOS or CONTROL), or no cohort at all; then
    ``matched`` is the first experiment whose match it passed (its guards still learn from the request)."""

    __slots__ = ("cohort", "experiment", "matched")

    def __init__(self, experiment: ExperimentState | None, cohort: int, matched: ExperimentState | None) -> None:
        self.experiment = experiment
        self.cohort = cohort
        self.matched = matched


UNASSIGNED: Final = Assignment(None, NONE, None)


class Router:
    __slots__ = ("active", "as_chaos", "as_control", "as_matched", "override_token")

    def __init__(self, active: tuple[ExperimentState, ...] = (), override_token: bytes | None = None) -> None:
        self.active = active
        self.override_token = override_token
        # One Assignment per experiment and outcome, indexed like ``active``.
        self.as_chaos = tuple(Assignment(st, CHAOS, None) for st in active)
        self.as_control = tuple(Assignment(st, CONTROL, None) for st in active)
        self.as_matched = tuple(Assignment(None, NONE, st) for st in active)

    def assign(self, req: RequestFacts) -> Assignment:
        if req.shadow:
            # The twin of a chaos request, sent by the sidecar in front of a service that calls this upstream:
            # it must reach the model as an unfaulted request would, so no experiment takes it (nor counts it).
            return UNASSIGNED
        forced = self._forced(req) if req.cohort_header is not None and self.override_token else None
        matched = -1
        active = self.active
        for i in range(len(active)):
            st = active[i]
            methods = st.methods
            if methods is not None and req.method not in methods:
                continue
            path_re = st.path_re
            if path_re is not None and path_re.fullmatch(req.path) is None:
                continue
            if st.header_rules and not _headers_match(st.header_rules, req):
                continue
            if forced is not None:
                if req.experiment_header is not None and req.experiment_header.decode("latin-1") != st.spec.name:
                    continue
                if forced == NONE:
                    return UNASSIGNED
                return self.as_chaos[i] if forced == CHAOS else self.as_control[i]
            key = st.sticky_key
            value = sticky_value(key, req) if key is not None else None
            bucket = bucket_of(st.salt, value) if value is not None else random_bucket()
            if bucket < st.chaos_buckets:
                return self.as_chaos[i]
            if bucket < st.bounds:
                return self.as_control[i]
            if matched < 0:
                matched = i  # untouched, but its outcome still informs this experiment's guards
        return self.as_matched[matched] if matched >= 0 else UNASSIGNED

    def _forced(self, req: RequestFacts) -> int | None:
        assert self.override_token is not None and req.cohort_header is not None
        token = req.token_header or b""
        if not hmac.compare_digest(token, self.override_token):
            return None
        return _FORCED.get(req.cohort_header.strip().lower())


def _headers_match(rules: Iterable[tuple[str, re.Pattern[str]]], req: RequestFacts) -> bool:
    for name, pattern in rules:
        value = req.header(name.encode("latin-1"))
        if value is None or pattern.fullmatch(value.decode("latin-1")) is None:
            return False
    return True
