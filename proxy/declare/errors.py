"""Policy validation errors: every problem is collected with its path before anything is refused."""

from __future__ import annotations

__all__ = ["Errors", "PolicyError"]


class PolicyError(ValueError):
    """A policy that cannot run; ``problems`` holds ``(path, message)`` pairs in file order."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))

    def lines(self) -> list[str]:
        return [f"{p}: {m}" if p else m for p, m in self.problems]


class Errors:
    """Collects problems so that one validation pass reports all of them, not the first."""

    __slots__ = ("problems",)

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def __bool__(self) -> bool:
        return bool(self.problems)

    def raise_if_any(self) -> None:
        if self.problems:
            raise PolicyError(self.problems)
