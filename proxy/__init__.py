"""mlchaos: a chaos-engineering sidecar proxy for model-serving endpoints."""

__version__ = "0.1.0"


def discover(discover_system: bool = True) -> dict[str, object]:
    """``chaos discover mlchaos`` looks for ``discover`` in the distribution's top package: the Chaos Toolkit
    extension's activities (proxy/chaostoolkit; needs the [chaostoolkit] extra)."""
    from .chaostoolkit import discover as extension_discover

    return extension_discover(discover_system)
