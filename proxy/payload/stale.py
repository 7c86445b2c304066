"""What each sticky key sent before: the source of the ``stale`` feature fault (feature store lag).

Per key, a ring of the last ``depth`` requests' feature rows with their times. ``get`` returns the rows sent
N requests ago and/or at least N seconds ago. Memory is bounded by ``max_bytes``: each entry's size is
estimated when stored (``sys.getsizeof`` of its values plus container overhead), and least recently used
keys (put or get) are evicted until the total fits; when the key being stored is the only one left, its
oldest entries go. An entry larger than the whole budget is not stored.

Size the ring to the question asked: ``depth`` at least the ``age_requests`` wanted (None: no count limit),
and ``max_age`` the ``age_seconds`` wanted: an entry is dropped once a newer entry is itself older than
``max_age`` (it can no longer be the answer), so the ring holds the last ``max_age`` seconds plus one.

Only scalar cells are kept (stale values only replace scalar cells); single-threaded use (the event loop).
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .table import MISSING, FeatureTable, is_scalar

__all__ = ["StaleCache", "estimate_size"]

_PTR = 8
_TUPLE = sys.getsizeof(())
_ENTRY = 72 + _PTR  # the entry object and its slot in the ring
_KEY = sys.getsizeof(deque(maxlen=1)) + 100  # the ring, and the key's slot in the ordered dict


def estimate_size(value: Any) -> int:
    """Bytes a stored cell costs: its pointer, plus the object unless it is a shared singleton."""
    if value is None or value is MISSING or isinstance(value, bool):
        return _PTR
    return _PTR + sys.getsizeof(value)


@dataclass(slots=True)
class _Entry:
    at: float
    names: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    size: int


def _entry(at: float, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> _Entry:
    names_t = tuple(names)
    rows_t = tuple(tuple(v if is_scalar(v) else MISSING for v in r) for r in rows)
    size = _ENTRY + _TUPLE + _PTR * len(names_t) + sum(_PTR + sys.getsizeof(n) for n in names_t)
    size += _TUPLE + _PTR * len(rows_t)
    for r in rows_t:
        size += _TUPLE + sum(estimate_size(v) for v in r)
    return _Entry(at, names_t, rows_t, size)


class StaleCache:
    def __init__(
        self, max_bytes: int, *, depth: int | None = 32, max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes <= 0 or (depth is not None and depth <= 0) or (max_age is not None and max_age < 0):
            raise ValueError("max_bytes and depth must be positive, max_age not negative")
        self.max_bytes = max_bytes
        self.depth = depth
        self.max_age = max_age
        self._clock = clock
        self._keys: OrderedDict[str, deque[_Entry]] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """The estimated bytes held (never more than ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def entries(self, key: str) -> int:
        ring = self._keys.get(key)
        return len(ring) if ring is not None else 0

    def clear(self) -> None:
        self._keys.clear()
        self._bytes = 0

    def discard(self, key: str) -> None:
        ring = self._keys.pop(key, None)
        if ring is not None:
            self._bytes -= _KEY + sum(e.size for e in ring)

    def _pop_oldest(self, key: str) -> None:
        ring = self._keys[key]
        self._bytes -= ring.popleft().size
        if not ring:
            del self._keys[key]
            self._bytes -= _KEY

    def _expire(self, key: str, now: float) -> None:
        if self.max_age is None:
            return
        ring = self._keys.get(key)
        # the oldest entry goes when the next one is already old enough to answer instead
        while ring is not None and len(ring) >= 2 and now - ring[1].at >= self.max_age:
            self._pop_oldest(key)

    def put(
        self, key: str, rows: FeatureTable | Sequence[Mapping[str, Any]], *, now: float | None = None,
    ) -> bool:
        """Remember what ``key`` sent now (a table, or rows as name → value); False when it alone exceeds
        the budget and was not stored."""
        at = self._clock() if now is None else now
        if isinstance(rows, FeatureTable):
            names: list[str] = list(rows.names)
            values = [[c[i] for c in rows.columns] for i in range(rows.n_rows)]
        else:
            names = list(dict.fromkeys(k for r in rows for k in r))
            values = [[r.get(n, MISSING) for n in names] for r in rows]
        entry = _entry(at, names, values)
        if entry.size + _KEY > self.max_bytes:
            return False
        ring = self._keys.get(key)
        if ring is None:
            ring = self._keys[key] = deque()
            self._bytes += _KEY
        self._keys.move_to_end(key)
        if self.depth is not None and len(ring) >= self.depth:
            self._bytes -= ring.popleft().size
        ring.append(entry)
        self._bytes += entry.size
        self._expire(key, at)
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._keys))
            if oldest != key:
                self.discard(oldest)
            else:
                self._pop_oldest(key)
        return True

    def get(
        self, key: str, age_seconds: float | None = None, age_requests: int | None = None, *,
        now: float | None = None,
    ) -> list[dict[str, Any]] | None:
        """The rows ``key`` sent ``age_requests`` requests ago (1 = the last one stored) and/or at least
        ``age_seconds`` ago: the most recent entry meeting both. With neither, the last one. None when the
        key has no such entry (not enough history, or evicted)."""
        if age_requests is not None and age_requests < 1:
            raise ValueError("age_requests counts from 1 (the last request stored)")
        at = self._clock() if now is None else now
        self._expire(key, at)
        ring = self._keys.get(key)
        if not ring:
            return None
        self._keys.move_to_end(key)
        wanted = 1 if age_requests is None and age_seconds is None else age_requests
        for back, entry in enumerate(reversed(ring), start=1):
            if wanted is not None and back < wanted:
                continue
            if age_seconds is not None and at - entry.at < age_seconds:
                continue
            return [{n: v for n, v in zip(entry.names, r, strict=True) if v is not MISSING} for r in entry.rows]
        return None
