"""RFC 6902 JSON Patch over RFC 6901 JSON Pointers, on parsed JSON values (dict, list, str, int, float, ...).

``apply_patch`` returns a new document and never changes its input; a patch that fails part-way changes
nothing. Every error (a malformed operation, a missing target, a failed ``test``) is a ValueError.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .table import clone

__all__ = ["apply_patch", "format_pointer", "json_equal", "parse_patch", "parse_pointer", "resolve", "set_pointer"]

_INDEX = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE = re.compile(r"~(?![01])")


def parse_pointer(pointer: str) -> list[str]:
    """The reference tokens of a JSON Pointer (``""`` is the whole document), with ``~1``/``~0`` decoded."""
    if not isinstance(pointer, str):
        raise ValueError(f"a JSON pointer must be a string, not {type(pointer).__name__}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} does not start with '/'")
    tokens = pointer[1:].split("/")
    for t in tokens:
        if _BAD_ESCAPE.search(t):
            raise ValueError(f"JSON pointer {pointer!r} has an invalid '~' escape")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def format_pointer(tokens: Sequence[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _array_index(token: str, arr: list[Any], *, allow_end: bool, pointer: str) -> int:
    if token == "-" and allow_end:
        return len(arr)
    if not _INDEX.fullmatch(token):
        raise ValueError(f"{pointer!r}: {token!r} is not an array index")
    i = int(token)
    if i > len(arr) or (i == len(arr) and not allow_end):
        raise ValueError(f"{pointer!r}: index {i} is out of range")
    return i


def _child(container: Any, token: str, pointer: str) -> Any:
    if isinstance(container, dict):
        if token not in container:
            raise ValueError(f"{pointer!r}: no member {token!r}")
        return container[token]
    if isinstance(container, list):
        return container[_array_index(token, container, allow_end=False, pointer=pointer)]
    raise ValueError(f"{pointer!r}: cannot descend into a {type(container).__name__}")


def resolve(doc: Any, pointer: str) -> Any:
    """The value ``pointer`` refers to in ``doc``; ValueError when there is none."""
    value = doc
    for t in parse_pointer(pointer):
        value = _child(value, t, pointer)
    return value


def set_pointer(doc: Any, pointer: str, value: Any) -> Any:
    """A new ``doc`` with the existing location ``pointer`` replaced by ``value`` (a ``replace`` operation)."""
    return apply_patch(doc, [{"op": "replace", "path": pointer, "value": value}])


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values (RFC 6902 §4.6): numbers by value, a bool is not a number, NaN equals NaN."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a is None and b is None


class _Doc:
    """The document under patch; ``root`` may be replaced by operations on ``""``."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def parent(self, pointer: str) -> tuple[Any, str | None]:
        tokens = parse_pointer(pointer)
        if not tokens:
            return None, None
        container = self.root
        for t in tokens[:-1]:
            container = _child(container, t, pointer)
        if not isinstance(container, dict | list):
            raise ValueError(f"{pointer!r}: the parent is a {type(container).__name__}, not a container")
        return container, tokens[-1]

    def add(self, pointer: str, value: Any) -> None:
        container, token = self.parent(pointer)
        if token is None:
            self.root = value
        elif isinstance(container, dict):
            container[token] = value
        else:
            container.insert(_array_index(token, container, allow_end=True, pointer=pointer), value)

    def remove(self, pointer: str) -> Any:
        container, token = self.parent(pointer)
        if token is None:
            raise ValueError("cannot remove the whole document")
        if isinstance(container, dict):
            if token not in container:
                raise ValueError(f"{pointer!r}: no member {token!r}")
            return container.pop(token)
        return container.pop(_array_index(token, container, allow_end=False, pointer=pointer))

    def replace(self, pointer: str, value: Any) -> None:
        container, token = self.parent(pointer)
        if token is None:
            self.root = value
        elif isinstance(container, dict):
            if token not in container:
                raise ValueError(f"{pointer!r}: no member {token!r}")
            container[token] = value
        else:
            container[_array_index(token, container, allow_end=False, pointer=pointer)] = value


def _member(op: Mapping[str, Any], name: str, index: int) -> Any:
    if name not in op:
        raise ValueError(f"operation {index}: missing {name!r}")
    return op[name]


def _pointer_member(op: Mapping[str, Any], name: str, index: int) -> str:
    value = _member(op, name, index)
    if not isinstance(value, str):
        raise ValueError(f"operation {index}: {name!r} must be a string")
    parse_pointer(value)
    return value


def apply_patch(doc: Any, patch: Sequence[Mapping[str, Any]]) -> Any:
    """``doc`` patched by the operations of ``patch``, as a new document; ValueError on any error."""
    if not isinstance(patch, list | tuple):
        raise ValueError("a JSON Patch is an array of operations")
    target = _Doc(clone(doc))
    for i, op in enumerate(patch):
        if not isinstance(op, Mapping):
            raise ValueError(f"operation {i} is not an object")
        kind = _member(op, "op", i)
        path = _pointer_member(op, "path", i)
        if kind == "add":
            target.add(path, clone(_member(op, "value", i)))
        elif kind == "remove":
            target.remove(path)
        elif kind == "replace":
            target.replace(path, clone(_member(op, "value", i)))
        elif kind == "move":
            src = _pointer_member(op, "from", i)
            if src == path:
                resolve(target.root, src)  # must exist
                continue
            if path.startswith(src + "/"):
                raise ValueError(f"operation {i}: cannot move {src!r} into its own child {path!r}")
            target.add(path, target.remove(src))
        elif kind == "copy":
            src = _pointer_member(op, "from", i)
            target.add(path, clone(resolve(target.root, src)))
        elif kind == "test":
            expected = _member(op, "value", i)
            if not json_equal(resolve(target.root, path), expected):
                raise ValueError(f"operation {i}: test failed at {path!r}")
        else:
            raise ValueError(f"operation {i}: unknown op {kind!r}")
    return target.root


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member {k!r}")
        out[k] = v
    return out


def parse_patch(text: str | bytes) -> list[dict[str, Any]]:
    """A JSON Patch document from its text; ValueError when it is not JSON, not an array of objects, or an
    object repeats a member (RFC 6902 A.13: ``{"op": "add", ..., "op": "remove"}`` is an error)."""
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(value, list) or not all(isinstance(op, dict) for op in value):
        raise ValueError("a JSON Patch is an array of objects")
    return value
