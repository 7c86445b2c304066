"""The ``mlchaos demo``: an embedded iris model server, a bounded load driver, and the glue that runs both
through a sidecar so a newcomer sees chaos and control cohorts side by side in a few seconds.

Everything here binds 127.0.0.1 only.
"""
