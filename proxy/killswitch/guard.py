"""What a guard is: a named check fed every finished request of an experiment, declared like a fault.

A guard module holds one ``Guard`` subclass with its ``name`` (its section under ``kill_switch:`` in the
policy, its label in the metrics), its ``Config`` (a frozen dataclass whose fields are declared with
``proxy.declare.fields.spec``: the policy fields, their checks, defaults and schema all come from it) and
``create``, ``observe`` and ``reason``. ``registry.GUARDS`` lists the guards; ``ExperimentGuards`` feeds
them in that order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from ..policy.model import KillSwitch

__all__ = ["Guard", "is_error"]


def is_error(status: int, include_4xx: bool) -> bool:
    """5xx answers and connections closed without one (status 0) are errors; 4xx only when asked."""
    return status >= 500 or status < 100 or (include_4xx and 400 <= status < 500)


# Compiled with the data plane; open to subclasses from Python, so that a guard can be written (or a failing
# one stand in, in tests) without compiling it.
@mypyc_attr(allow_interpreted_subclasses=True)
class Guard:
    """One guard of one experiment. It trips for good: once ``observe`` has returned True it is not fed again."""

    name: ClassVar[str] = ""
    # The description of its policy section.
    HELP: ClassVar[str] = ""
    # Its policy section, a frozen dataclass declared with spec(); every field has a default.
    Config: ClassVar[type] = object

    @classmethod
    def create(cls, config: Any, kill_switch: KillSwitch) -> Guard | None:
        """The guard for an experiment, or None when its config turns it off."""
        raise NotImplementedError

    def observe(self, chaos: bool, bad: bool, seconds: float) -> bool:
        """One finished request: of the chaos cohort or not (control, or untouched traffic the experiment
        matched), an error or not (``is_error``), how long it took. True when the guard trips."""
        raise NotImplementedError

    def observe_abandoned(self, chaos: bool, seconds: float) -> bool:
        """A client that left before its answer: why is unknown, so it is no error. True when it trips."""
        return False

    def observe_ttft(self, chaos: bool, seconds: float, abandoned: bool) -> bool:
        """A streamed LLM answer's time to first token (chaos or control; ``abandoned``: the client left before
        its first token, and ``seconds`` is how long it waited). True when it trips."""
        return False

    def reason(self) -> str:
        """Why it tripped, for the trip record and the logs."""
        raise NotImplementedError

    def e_value(self) -> float | None:
        """Its evidence against "no harm" (mlchaos_killswitch_evalue), or None for a guard without one."""
        return None

    def snapshot(self) -> dict[str, Any]:
        """The numbers behind its verdict, for the gate JSON and the trip record; includes its threshold."""
        raise NotImplementedError
