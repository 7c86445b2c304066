"""Steady-state hypotheses: the question a team brings to an experiment, answered by its own tolerances.

The checks (registry.py) are declared per experiment under ``hypothesis:``; the bookkeeping task judges them
(``judge.judge``) from numbers it already keeps, never per request. See check.py for held / deviated /
inconclusive and intervals.py for the confidence intervals.
"""
