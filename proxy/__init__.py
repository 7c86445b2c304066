"""mlchaos: a chaos-engineering sidecar proxy for model-serving endpoints."""

__version__ = "0.1.0"
