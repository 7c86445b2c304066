"""Observing the cohorts' predictions: drift statistics, sliding windows, bounded class labels, the sample
ratio check and the HTML report. Pure computation, except the background task that drives it
(``bookkeeping``) and the shadow requests it sends to the model (``shadow``)."""

from .classes import MAX_LABEL_CHARS, OTHER, ClassCounter, label_string
from .drift import (
    DEFAULT_THRESHOLDS,
    STATISTICS,
    DriftReport,
    Thresholds,
    chi_square,
    compare_classes,
    compare_numeric,
    js_categorical,
    js_distance,
    ks,
    learn_edges,
    psi,
    psi_categorical,
    wasserstein_normalized,
)
from .report import CHAOS_COLOR, CONTROL_COLOR, example_report, plot_count, render_report
from .srm import SRM_ALPHA, SrmResult, sample_ratio_mismatch, srm_check, srm_pvalue
from .window import COHORT_NAMES, KINDS, DriftHistory, PredictionWindows, Window

__all__ = [
    "CHAOS_COLOR",
    "COHORT_NAMES",
    "CONTROL_COLOR",
    "DEFAULT_THRESHOLDS",
    "KINDS",
    "MAX_LABEL_CHARS",
    "OTHER",
    "SRM_ALPHA",
    "STATISTICS",
    "ClassCounter",
    "DriftHistory",
    "DriftReport",
    "PredictionWindows",
    "SrmResult",
    "Thresholds",
    "Window",
    "chi_square",
    "compare_classes",
    "compare_numeric",
    "example_report",
    "js_categorical",
    "js_distance",
    "ks",
    "label_string",
    "learn_edges",
    "plot_count",
    "psi",
    "psi_categorical",
    "render_report",
    "sample_ratio_mismatch",
    "srm_check",
    "srm_pvalue",
    "wasserstein_normalized",
]
