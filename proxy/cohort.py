"""Cohort assignment: a deterministic hash of (experiment, sticky key) into 10,000 buckets.

Pure functions over bytes, so the same key lands in the same cohort in every process and after every
restart; Python's own ``hash`` is salted per process and would not.
"""

from __future__ import annotations

import hashlib
from typing import Final, Protocol, final
from urllib.parse import unquote_to_bytes

import numpy as np
import orjson

from .names import COHORT_NAMES, COHORTS
from .policy.model import BUCKETS, StickyKey

__all__ = ["CHAOS", "COHORTS", "COHORT_NAMES", "CONTROL", "NONE", "bucket_of", "entity_value", "random_bucket",
           "sticky_value"]

# Final: compiled, the modules that import them use the values, not a module dictionary lookup per use.
CHAOS: Final = 0
CONTROL: Final = 1
NONE: Final = 2

# Random buckets are drawn 4096 at a time by numpy as 16-bit integers in one bytes object, and read back
# two bytes at a time: compiled, that is native arithmetic with no int object per draw. Drawing each on its
# own (random.random() and a float-to-int) cost ~700 instructions per request; a pool of Python ints
# ~180 (its refill's .tolist()) and a cache miss per draw on a cold int object.
_RNG: Final = np.random.default_rng()
_POOL_SIZE: Final = 4096


@final
class _Draws:
    __slots__ = ("next", "pool")

    def __init__(self) -> None:
        self.pool = b""
        self.next = 0

    def draw(self) -> int:
        i = self.next
        pool = self.pool
        if i >= len(pool):
            draws = _RNG.integers(0, BUCKETS, _POOL_SIZE, dtype=np.uint16)
            pool = self.pool = draws.astype("<u2", copy=False).tobytes()  # little-endian, as read below
            i = 0
        self.next = i + 2
        return pool[i] | (pool[i + 1] << 8)


_DRAWS: Final = _Draws()


class KeySource(Protocol):

    @property
    def client_ip(self) -> bytes: ...

    @property
    def query(self) -> bytes: ...

    def header(self, name: bytes) -> bytes | None: ...

    def held_body(self) -> bytes | None:
        """The whole request body when it is held in memory (at most limits.inspect_body_bytes); None when it
        streams or is not complete."""
        ...


def bucket_of(salt: bytes, key: bytes) -> int:
    """The bucket (0..9999) of ``key`` within the experiment whose salt is ``salt`` (at most 64 bytes)."""
    digest = hashlib.blake2b(key, digest_size=8, key=salt).digest()
    # 2^64 mod 10^4 skews a bucket by at most 1 part in 1.8e15: negligible.
    return int.from_bytes(digest, "little") % BUCKETS


def random_bucket() -> int:
    """A bucket drawn uniformly at random, independently of every other draw."""
    return _DRAWS.draw()


def sticky_value(key: StickyKey, req: KeySource) -> bytes | None:
    """The request's value of the sticky key, or None when the request does not carry it."""
    kind = key.kind
    if kind == "header":
        value = req.header(key.name.encode("latin-1"))
        return value.strip() if value else None
    if kind == "client_ip":
        return req.client_ip or None
    if kind == "query":
        name = key.name.encode("latin-1")
        for pair in req.query.split(b"&"):
            k, sep, v = pair.partition(b"=")
            if sep and unquote_to_bytes(k.replace(b"+", b" ")) == name:
                return unquote_to_bytes(v.replace(b"+", b" ")) or None
        return None
    if kind == "entity":
        return entity_value(key.name, req.held_body())
    cookie = req.header(b"cookie")
    if not cookie:
        return None
    name = key.name.encode("latin-1")
    for part in cookie.split(b";"):
        k, sep, v = part.strip().partition(b"=")
        if sep and k == name:
            return v.strip(b'"') or None
    return None


def entity_value(name: str, body: bytes | None) -> bytes | None:
    """A Feast request's first value of the entity key ``name`` (``{"entities": {name: [v, ...]}}``): a batch of
    entity rows goes to one cohort, that of its first row. None when the body is not held, not JSON, or has no
    such key; only experiments whose sticky key is an entity pay for this parse."""
    if not body:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    entities = doc.get("entities") if isinstance(doc, dict) else None
    values = entities.get(name) if isinstance(entities, dict) else None
    if not isinstance(values, list) or not values:
        return None
    v = values[0]
    if isinstance(v, str):
        return v.encode() or None
    if v is None or isinstance(v, (dict, list)):
        return None
    # Numbers and booleans as JSON writes them: 1001 and "1001" are one entity to Feast's SDK users.
    return orjson.dumps(v)
