"""Rollout gate verdicts, for Argo Rollouts' ``web`` metric, Flagger webhooks and ``mlchaos gate``.

``pass``: enough chaos traffic and no guard tripped. ``fail``: a kill switch tripped. ``inconclusive``:
too little data yet, so a rollout pauses instead of counting an error.
"""

from __future__ import annotations

from typing import Any

from .cohort import CHAOS, CONTROL
from .edges.grpc.status import ERROR_CODE_NAMES
from .experiments import Experiments, ExperimentState

__all__ = ["experiment_verdict", "overall_verdict"]


def experiment_verdict(st: ExperimentState) -> dict[str, Any]:
    n_chaos, n_control = st.requests[CHAOS], st.requests[CONTROL]
    guards = st.guards.snapshot() if st.guards is not None else {}
    e_values = st.guards.e_values() if st.guards is not None else {}
    rate_chaos = st.errors[CHAOS] / n_chaos if n_chaos else 0.0
    rate_control = st.errors[CONTROL] / n_control if n_control else 0.0
    if st.tripped is not None:
        # The trip's own reason: a stop or halt afterwards changes st.reason, not why it failed.
        verdict, reason = "fail", f"kill switch tripped ({st.tripped.get('guard')}): {st.tripped.get('reason')}"
    elif st.guards is None:
        # No guard judges this experiment, so nothing can say it passed.
        verdict, reason = "inconclusive", "the experiment's kill switch is disabled: no guard judges it"
    elif n_chaos < st.spec.kill_switch.min_requests:
        verdict = "inconclusive"
        reason = f"{n_chaos} chaos requests so far; the verdict needs {st.spec.kill_switch.min_requests}"
    else:
        verdict, reason = "pass", "no guard has tripped"
    # The hypothesis, when declared, must hold too: deviated fails, not yet decided holds a pass back.
    hypothesis = st.verdict.to_dict() if st.verdict is not None else None
    if hypothesis is not None and verdict != "fail":
        if hypothesis["verdict"] == "deviated":
            verdict, reason = "fail", "the hypothesis deviated: " + ", ".join(
                f"{c['check']} ({c['reason']})" for c in hypothesis["checks"].values() if c["status"] == "deviated")
        elif hypothesis["verdict"] == "inconclusive" and verdict == "pass":
            verdict, reason = "inconclusive", "no guard has tripped; the hypothesis is not decided yet"
    elif verdict == "pass" and st.spec.hypothesis.asked():
        verdict, reason = "inconclusive", "no guard has tripped; the hypothesis is not judged yet"
    return {
        "experiment": st.spec.name,
        "verdict": verdict,
        "reason": reason,
        "tripped": st.tripped is not None,
        "n_chaos": n_chaos,
        "n_control": n_control,
        "errors_chaos": st.errors[CHAOS],
        "errors_control": st.errors[CONTROL],
        # Observed relative risk of an error, chaos against control (None while control has none).
        "effect": rate_chaos / rate_control if rate_control else None,
        "e_value": max(e_values.values(), default=0.0),
        "guards": guards,
        "hypothesis": hypothesis,
        **({"trip": st.tripped} if st.tripped is not None else {}),
    }


def overall_verdict(experiments: Experiments, name: str | None = None) -> dict[str, Any] | None:
    """One experiment's verdict, or all of them combined; None when ``name`` is unknown."""
    if name is not None:
        st = experiments.states.get(name)
        return experiment_verdict(st) if st is not None else None
    each = [experiment_verdict(st) for st in experiments.states.values()
            if st.spec.enabled or st.tripped is not None or st.running_since is not None]
    verdicts = {v["verdict"] for v in each}
    verdict = "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts or not each else "pass"
    return {
        "verdict": verdict,
        "tripped": any(v["tripped"] for v in each),
        "n_chaos": sum(v["n_chaos"] for v in each),
        "n_control": sum(v["n_control"] for v in each),
        "e_value": max((v["e_value"] for v in each), default=0.0),
        "guards": {v["experiment"]: v["guards"] for v in each},
        "experiments": each,
    }


# -- mlchaos gate: the same verdicts from outside the process -------------------------------------------

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 2}


def _get_json(url: str, token: str | None, timeout: float) -> Any:
    import json
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def gate_from_admin(admin_url: str, experiment: str | None, *, token: str | None = None,
                    timeout: float = 5.0) -> dict[str, Any]:
    from urllib.parse import quote

    url = admin_url.rstrip("/") + "/gate" + (f"?experiment={quote(experiment)}" if experiment else "")
    data = _get_json(url, token, timeout)
    if not isinstance(data, dict) or data.get("verdict") not in EXIT_CODES:
        raise ValueError(f"{url} did not answer a gate verdict: {str(data)[:200]}")
    return data


def _promql_scalar(prom_url: str, query: str, timeout: float) -> float:
    from urllib.parse import urlencode

    data = _get_json(prom_url.rstrip("/") + "/api/v1/query?" + urlencode({"query": query}), None, timeout)
    if not isinstance(data, dict) or data.get("status") != "success":
        raise ValueError(f"Prometheus refused {query!r}: {str(data)[:200]}")
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def gate_from_prometheus(prom_url: str, experiment: str, *, alpha: float = 0.01, min_requests: int = 100,
                         timeout: float = 5.0, window: float | None = None) -> dict[str, Any]:
    """The fleet-wide verdict: the error guard's test on counts summed over every sidecar Prometheus scrapes,
    over the sidecars' lifetime or, with ``window`` (seconds), over the last ``window`` only: after a re-arm
    or a fix, a window shorter than the time since keeps the old errors out of the verdict."""
    from .killswitch.sequential import CountGuard

    sel = f'experiment="{experiment}"'
    # 5xx, drops, and the gRPC codes whose HTTP equivalent is a 5xx (a gRPC call's code label is its status name).
    errors = "|".join(("5xx", "dropped", *ERROR_CODE_NAMES))

    def total(selector: str) -> str:
        series = f"mlchaos_requests_total{{{selector}}}"
        return f"sum(increase({series}[{int(window)}s]))" if window else f"sum({series})"

    q = {
        "n_chaos": total(f'{sel},cohort="chaos"'),
        "n_control": total(f'{sel},cohort="control"'),
        "errors_chaos": total(f'{sel},cohort="chaos",code=~"{errors}"'),
        "errors_control": total(f'{sel},cohort="control",code=~"{errors}"'),
        "tripped_sidecars": f"sum(mlchaos_killswitch_tripped{{{sel}}})",
        "sidecars": f"count(mlchaos_experiment_active{{{sel}}})",
    }
    counts = {k: _promql_scalar(prom_url, query, timeout) for k, query in q.items()}
    # increase() extrapolates to the window's edges: whole requests, and never more errors than requests.
    n_chaos, n_control = round(counts["n_chaos"]), round(counts["n_control"])
    bad_chaos = min(round(counts["errors_chaos"]), n_chaos)
    bad_control = min(round(counts["errors_control"]), n_control)
    guard = CountGuard(alpha)
    guard_tripped = guard.observe_many(n_chaos, bad_chaos, n_control, bad_control)
    if counts["tripped_sidecars"] > 0 or guard_tripped:
        verdict = "fail"
        reason = (f"{int(counts['tripped_sidecars'])} sidecar(s) tripped" if counts["tripped_sidecars"] > 0
                  else "the error guard trips on the fleet's summed counts")
    elif n_chaos < min_requests:
        verdict, reason = "inconclusive", f"{n_chaos} chaos requests across the fleet; the verdict needs {min_requests}"
    else:
        verdict, reason = "pass", "no sidecar tripped and the summed counts show no harm"
    return {"experiment": experiment, "verdict": verdict, "reason": reason, "window_seconds": window,
            "tripped": verdict == "fail", "n_chaos": n_chaos, "n_control": n_control,
            "errors_chaos": bad_chaos, "errors_control": bad_control, "sidecars": int(counts["sidecars"]),
            "e_value": guard.e_value, "guards": {"errors": guard.snapshot()}}
