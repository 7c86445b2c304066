"""``stale_object``: an object store or a file server serves an earlier version of the same object.

The fault remembers, per object (the Host header and the path, without the query), the last two different
versions of it it has seen (body and the headers that describe it: Last-Modified, ETag, Content-Type,
Content-MD5, x-amz-version-id, x-amz-checksum-*), and answers with the earlier one once the object has changed:
its body, with its own older Last-Modified and ETag (and checksums, which match it). Until an object has
changed under the fault's eyes there is nothing older to serve and the answer goes on as it came. Only the
GETs the fault acts on are seen: with ``probability`` below 1 it learns versions from that share of reads.

Memory is bounded by ``memory`` (bytes of bodies and headers kept) and ``objects`` (objects remembered); least
recently used objects go first, and a body larger than ``memory`` is not kept. Single-threaded (the event loop).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Self

from ..declare.errors import Errors
from ..declare.fields import Field
from .base import Fault, FaultContext, Outcome, ResponseView

# The headers that belong to a version of an object (served with its body).
VERSION_HEADERS: Final = frozenset({
    b"last-modified", b"etag", b"content-type", b"content-md5", b"x-amz-version-id", b"x-amz-checksum-crc32",
    b"x-amz-checksum-crc32c", b"x-amz-checksum-crc64nvme", b"x-amz-checksum-sha1", b"x-amz-checksum-sha256",
    b"x-amz-checksum-type",
})
_OVERHEAD: Final = 256  # an entry's key, digests and containers, roughly


class Version:
    __slots__ = ("body", "digest", "headers", "size")

    def __init__(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.body = body
        self.digest = hashlib.blake2b(body, digest_size=16).digest()
        self.headers = [(n, v) for n, v in headers if n.lower() in VERSION_HEADERS]
        self.size = len(body) + sum(len(n) + len(v) for n, v in self.headers) + _OVERHEAD


class ObjectCache:
    """Per object key, the newest version seen and the one before it."""

    def __init__(self, max_bytes: int, max_objects: int) -> None:
        self.max_bytes = max_bytes
        self.max_objects = max_objects
        self.bytes = 0
        self.entries: OrderedDict[str, tuple[Version, Version | None]] = OrderedDict()

    def _size(self, entry: tuple[Version, Version | None]) -> int:
        return entry[0].size + (entry[1].size if entry[1] is not None else 0)

    def observe(self, key: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> Version | None:
        """Record the version of ``key`` just served; the earlier version to serve instead, if one is known."""
        now = Version(body, headers)
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= self._size(old)
        if old is None:
            current, earlier = now, None
        elif old[0].digest == now.digest:
            current, earlier = old[0], old[1]  # unchanged since: the version before it is still the earlier one
        else:
            current, earlier = now, old[0]
        entry = (current, earlier)
        if self._size(entry) > self.max_bytes:
            entry = (current, None)  # both do not fit: keep the newest (served this time all the same)
        if self._size(entry) <= self.max_bytes:
            self.entries[key] = entry
            self.bytes += self._size(entry)
            while self.bytes > self.max_bytes or len(self.entries) > self.max_objects:
                _, gone = self.entries.popitem(last=False)
                self.bytes -= self._size(gone)
        return earlier


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleObject(Fault):
    type: ClassVar[str] = "stale_object"
    HELP: ClassVar[str] = (
        "Serve an earlier version of the same object (keyed by host and path) with its older Last-Modified and "
        "ETag, once the object has changed; versions are kept in a cache bounded by `memory` and `objects`.")
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("memory", "size", default=64 * 1024 * 1024, minimum=1024,
              help="Most bytes of object versions the cache keeps."),
        Field("objects", "integer", default=1024, minimum=1, help="Most objects the cache remembers."),
    )

    memory: int = 64 * 1024 * 1024
    objects: int = 1024
    cache: ObjectCache = field(default_factory=lambda: ObjectCache(64 * 1024 * 1024, 1024), compare=False,
                               repr=False)

    @classmethod
    def from_values(cls, values: dict[str, Any], path: str, errors: Errors) -> Self | None:
        return cls(**values, cache=ObjectCache(values["memory"], values["objects"]))

    def apply(self, ctx: FaultContext) -> Outcome:
        if ctx.method != "GET":
            return None  # a PUT's or a POST's answer is no version of the object
        host = ctx.header(b"host") or b""
        key = host.decode("latin-1") + ctx.path
        ctx.on_response(lambda view: self._serve(view, key))
        return None

    def _serve(self, view: ResponseView, key: str) -> None:
        if view.status != 200:
            return  # an error, or a range of the object (206): nothing to remember or replace
        earlier = self.cache.observe(key, view.body, view.headers)
        if earlier is None:
            return
        view.headers = [(n, v) for n, v in view.headers if n.lower() not in VERSION_HEADERS] + earlier.headers
        view.body = earlier.body
