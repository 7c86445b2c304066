"""The vocabulary things declare themselves with: policy fields (``fields``), their units and value parsers
(``units``, ``values``) and problems with their paths (``errors``).

A leaf package: it imports nothing else of mlchaos, so faults, guards, payload formats and the policy model can
all declare their fields with it, and the policy loader can import them all, without an import cycle
(``make lint`` checks: scripts/check_imports.py).
"""
