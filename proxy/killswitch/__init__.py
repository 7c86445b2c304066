"""Kill switch: anytime-valid guards that stop an experiment when its chaos cohort is measurably harmed."""

from .seatbelt import Seatbelt
from .sequential import DEFAULT_EFFECTS, DEFAULT_PRIOR, DEFAULT_WEIGHTS, CountGuard

__all__ = ["DEFAULT_EFFECTS", "DEFAULT_PRIOR", "DEFAULT_WEIGHTS", "CountGuard", "Seatbelt"]
