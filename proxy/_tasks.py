"""Background tasks that are not garbage-collected mid-flight."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# The event loop keeps only weak references to tasks: one that nothing else holds may vanish
# before it finishes. Every task we start lives here until it is done.
_RUNNING: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    task = asyncio.create_task(coro, name=name)  # noqa: TID251 - this is the wrapper
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task
