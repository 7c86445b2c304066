"""A Chaos Toolkit extension for mlchaos, shipped in the package: ``pip install 'mlchaos[chaostoolkit]'``.

Providers in an experiment name ``proxy.chaostoolkit.actions`` (start_experiment, stop_experiment, halt,
rearm_experiment, load_policy) and ``proxy.chaostoolkit.probes`` (verdict, gate, cohort_metrics); the admin
API's address and token come from the experiment's configuration (``mlchaos_admin_url``) and secrets
(``admin_token``), else MLCHAOS_ADMIN_URL and MLCHAOS_ADMIN_TOKEN. deploy/chaostoolkit/ has an experiment.

chaoslib is imported in ``discover()`` only: the actions and probes need nothing beyond the core's own
dependencies, and the sidecar never imports chaostoolkit.
"""

from typing import Any

__all__ = ["discover"]


def discover(discover_system: bool = True) -> dict[str, Any]:
    """The extension's activities, in chaostoolkit's discovery format (``chaos discover`` calls this).
    mlchaos has no system to describe beyond its admin API, so ``discover_system`` changes nothing."""
    from importlib.metadata import PackageNotFoundError, version

    from chaoslib.discovery import discover_actions, discover_probes, initialize_discovery_result

    try:
        mlchaos_version = version("mlchaos")
    except PackageNotFoundError:  # run from a source tree that was never installed
        mlchaos_version = "unknown"
    result: dict[str, Any] = initialize_discovery_result("mlchaos", mlchaos_version, "mlchaos")
    result["activities"].extend(discover_actions("proxy.chaostoolkit.actions"))
    result["activities"].extend(discover_probes("proxy.chaostoolkit.probes"))
    return result
