"""The experiment report as one self-contained HTML page: inline CSS and inline SVG plots made here, no
scripts, no external fonts, images or stylesheets (it opens offline and can be mailed or attached).

``render_report(data)`` takes the JSON that ``GET /experiments/{name}/report`` returns; ``example_report()``
returns a realistic one. The shape (keys marked ``?`` may be absent; numbers may be null where unknown)::

    {
      "experiment": str,
      "generated_at": str,                  # ISO 8601, e.g. "2026-12-01T09:20:00Z"
      "state": str,                         # e.g. "running", "stopped", "tripped"
      "chaos_percent": float, "control_percent": float,   # the policy's shares, percent
      "window"?: {"max_n": int, "max_age_seconds": float},  # the sliding window of the drift statistics
      "cohorts": {
        "chaos" | "control": {
          "requests": int,                  # answered, every status class and dropped
          "errors": int,                    # 5xx + dropped
          "latency_seconds": {              # mlchaos_request_duration_seconds of the cohort
            "buckets": [[le, cumulative_count], ...],   # le ascending; the last is "+Inf" (JSON has no inf)
            "sum"?: float, "count"?: int},
          "faults"?: {fault_type: count}    # injected faults (chaos)
        }
      },
      "outputs": {                          # per model output (at most PredictionWindows.max_outputs)
        name: {
          "kind": "numeric" | "class" | "probability",
          "chaos" | "control": {
            "values": [float, ...],         # window sample, at most 2000: the values (numeric) or the
                                            # confidences, i.e. the largest probability (probability)
            "classes": {label: count},      # window counts (class; probability: argmax index "0", "1", ...)
            "seen"?: int},                  # predictions seen since the start
          "drift": null | {                 # DriftReport.to_dict(): null where a statistic does not apply
            "psi": float, "js": float,
            "ks": float|null, "ks_p": float|null, "wasserstein": float|null,   # numeric, probability
            "chi2": float|null, "chi2_p": float|null,                          # class
            "n_control": int, "n_chaos": int, "alarms": [str], "warnings": [str]},
          "alarms": [str, ...]              # statistics past their alarm level: "psi", "ks", "js", ...
        }
      },
      "drift_history": [                    # oldest first (DriftHistory.to_list())
        {"t": str, "output": str, "psi": float, "ks_p": float|null, "chi2_p"?: float|null,
         "js": float, "wasserstein"?: float|null}, ...],
      "srm": {"p_value": float, "mismatch": bool,
              "observed_share": {"chaos": float, "control": float},      # fractions of chaos + control
              "expected_share"?: {"chaos": float, "control": float}},
      "kill_switch": {...},                 # free-form JSON object, shown as a table
      "thresholds"?: {"psi_warn": .., "psi_alarm": .., "ks_p": .., "chi2_p": .., "js": .., "wasserstein": ..}
    }

Plots (one ``<svg>`` each): the latency CDF of both cohorts (log time axis, from the cumulative buckets);
per output, the chaos and control histograms overlaid (numeric values; confidences on [0, 1] for
probability outputs) or grouped bars of class shares; per output, drift over time (PSI with its warn and
alarm levels; the KS or chi-square p-value on a log axis with its level). Chaos is drawn in ``CHAOS_COLOR``,
control in ``CONTROL_COLOR``. Every string from the data is HTML-escaped: output names and class labels
come from model responses.

The package: ``data`` builds the JSON from an experiment's state, ``values`` reads it tolerantly and
formats numbers, ``svg`` is the drawing kit, ``charts`` the plots, ``page`` the tables and the page,
``example`` a realistic report.
"""

from .data import report_data
from .example import example_report
from .page import plot_count, render_report
from .svg import CHAOS_COLOR, CONTROL_COLOR
from .values import latency_quantile

__all__ = ["CHAOS_COLOR", "CONTROL_COLOR", "example_report", "latency_quantile", "plot_count", "render_report",
           "report_data"]
