# The C module proxy/payload/adapters/_cells.c (built with the compiled data plane; optional).
from typing import Any

def cells(
    body: bytes, start: int, delimiter: int, width: int, crlf: bool, columns: list[int], /,
) -> tuple[int, bytes, bytes] | None: ...
def cut(body: bytes, starts: Any, stops: Any, blank: bytes, /) -> bytes: ...
def gather(
    body: bytes, starts: Any, stops: Any, glue: Any, seps: tuple[bytes, ...], head: bytes, tail: bytes, /,
) -> bytes: ...
