"""Locust users and hooks for load tests through mlchaos (the optional extra: ``pip install 'mlchaos[load]'``).

In a locustfile::

    from locust import constant_throughput
    from proxy.locust import InferenceUser

    class ModelUser(InferenceUser):
        model_name = "iris"
        wait_time = constant_throughput(10)

**Per-cohort statistics.** Every request is recorded under its name and the cohort mlchaos put it in, read
from the ``x-mlchaos-cohort`` response header (the experiment needs ``reveal: {cohort: true}``):
``v2 infer [chaos]``, ``v2 infer [control]``, ``v2 infer [none]`` (outside every experiment, or not
revealed) and ``v2 infer [no-response]`` (the connection failed: no header to read). Locust's table then shows
chaos and control side by side.

**The gate.** Importing this module registers event hooks, active when an admin API is given
(``--mlchaos-admin URL`` or ``MLCHAOS_ADMIN``); they run on the master (or the only process), never on workers:

* test start: ``POST /experiments/NAME/start`` (``--mlchaos-experiment`` / ``MLCHAOS_EXPERIMENT``);
* test stop: ``POST /experiments/NAME/stop`` if this test started it, then ``GET /gate?experiment=NAME``;
* exit: Locust's exit code follows the gate. ``fail`` (a kill switch tripped, or the experiment's hypothesis
  deviated) gives 1. ``inconclusive`` (too few chaos requests for a verdict, or a hypothesis not yet decided)
  gives 0 with a warning, or 1 with ``--mlchaos-on-inconclusive fail``. An admin API that cannot be reached,
  or an experiment that cannot be started, gives 1. Failed requests of the chaos cohort are the faults doing
  their job: the gate judges them, so they do not fail the run by themselves; failures in any other cohort
  still give ``--exit-code-on-error`` (1) as in plain Locust.

Mutating admin calls send ``Authorization: Bearer $MLCHAOS_ADMIN_TOKEN`` (or ``--mlchaos-token``) when set.
``--mlchaos-verdict-file PATH`` writes the verdict, the exit code and any problem as JSON.
"""

from __future__ import annotations

import json
import logging
import random
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

try:
    import locust.log
    from locust import HttpUser, events, task
    from locust.env import Environment
    from locust.runners import WorkerRunner
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without Locust
    raise ImportError("proxy.locust needs Locust: pip install 'mlchaos[load]'") from exc

from .names import COHORTS

__all__ = [
    "COHORT_HEADER",
    "NO_RESPONSE",
    "GateOptions",
    "InferenceUser",
    "cohort_of",
    "exit_code",
    "request_name",
]

log = logging.getLogger("mlchaos.locust")

COHORT_HEADER = "x-mlchaos-cohort"
# Requests that got no answer (refused, reset, timed out) carry no header to read.
NO_RESPONSE = "no-response"
ADMIN_TIMEOUT = 5.0

# Per-class means and standard deviations of the four iris features (cm), as in the demo model.
_IRIS_MEANS = ((5.01, 3.43, 1.46, 0.25), (5.94, 2.77, 4.26, 1.33), (6.59, 2.97, 5.55, 2.03))
_IRIS_STDS = ((0.35, 0.38, 0.17, 0.11), (0.52, 0.31, 0.47, 0.20), (0.64, 0.32, 0.55, 0.28))


def cohort_of(status: int, headers: Mapping[str, str]) -> str:
    """The cohort mlchaos names in a response: chaos, control, none, or no-response when there was none."""
    if status == 0:
        return NO_RESPONSE
    value = (headers.get(COHORT_HEADER) or "").strip().lower()
    return value if value in COHORTS else "none"


def request_name(base: str, cohort: str) -> str:
    return f"{base} [{cohort}]"


# --------------------------------------------------------------------------------------------- users

class InferenceUser(HttpUser):
    """Sends inference requests, KServe V1 ``:predict`` and Open Inference (V2) ``/infer``, 1 to 4 rows each.

    Each request is made on behalf of one of ``end_users`` simulated end users, named in the ``user_header``
    header: a policy with ``sticky_key: header:x-user-id`` keeps each of them in one cohort, while the Locust
    user spreads its traffic over all cohorts as a real client service would. ``end_users = 0`` sends one
    fixed id per Locust user instead. Override ``rows`` (and ``model_name``) for another model; for a
    V2-only server (MLServer, Triton) set ``tasks = [InferenceUser.v2_infer]``.
    """

    abstract = True
    model_name: ClassVar[str] = "iris"
    user_header: ClassVar[str] = "x-user-id"
    end_users: ClassVar[int] = 5000
    request_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = random.Random()
        self.fixed_user = f"locust-{uuid.uuid4().hex[:12]}"
        self.sent = 0

    def end_user(self) -> str:
        if self.end_users <= 0:
            return self.fixed_user
        return f"user-{self.rng.randrange(self.end_users)}"

    def rows(self) -> list[list[float]]:
        """One to four iris-like feature rows (sepal length and width, petal length and width, in cm)."""
        out = []
        for _ in range(self.rng.randint(1, 4)):
            k = self.rng.randrange(len(_IRIS_MEANS))
            out.append([round(max(0.1, self.rng.gauss(m, s)), 2)
                        for m, s in zip(_IRIS_MEANS[k], _IRIS_STDS[k], strict=True)])
        return out

    def infer(self, name: str, path: str, body: Mapping[str, Any]) -> str:
        """POST ``body`` as JSON; Locust records it as ``name [cohort]``. Returns the cohort."""
        self.sent += 1
        with self.client.post(path, json=body, headers={self.user_header: self.end_user()}, name=name,
                              timeout=self.request_timeout, catch_response=True) as resp:
            cohort = cohort_of(resp.status_code, resp.headers)
            # Locust reports the request when the block ends, under request_meta["name"].
            resp.request_meta["name"] = request_name(name, cohort)
        return cohort

    @task(3)
    def v2_infer(self) -> None:
        rows = self.rows()
        self.infer("v2 infer", f"/v2/models/{self.model_name}/infer", {
            "id": f"{self.fixed_user}-{self.sent}",
            "inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
                        "data": [x for row in rows for x in row]}],
        })

    @task(1)
    def v1_predict(self) -> None:
        self.infer("v1 predict", f"/v1/models/{self.model_name}:predict", {"instances": self.rows()})


# ---------------------------------------------------------------------------------------------- gate

@dataclass(frozen=True, slots=True)
class GateOptions:
    admin: str
    experiment: str = ""
    token: str = ""
    on_inconclusive: str = "pass"
    verdict_file: str = ""

    @classmethod
    def from_environment(cls, environment: Environment) -> GateOptions | None:
        """The options of this run, or None when no admin API was given (the hooks then do nothing)."""
        opts = environment.parsed_options
        admin = str(getattr(opts, "mlchaos_admin", "") or "").strip()
        if not admin:
            return None
        return cls(admin=admin.rstrip("/"),
                   experiment=str(getattr(opts, "mlchaos_experiment", "") or "").strip(),
                   token=str(getattr(opts, "mlchaos_token", "") or ""),
                   on_inconclusive=str(getattr(opts, "mlchaos_on_inconclusive", "pass") or "pass"),
                   verdict_file=str(getattr(opts, "mlchaos_verdict_file", "") or ""))

    def call(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        """One admin API call: (status, JSON body); status 0 when the API could not be reached."""
        headers = {"Accept": "application/json"}
        if self.token and method != "GET":
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.admin + path, method=method, headers=headers,
                                     data=b"" if method == "POST" else None)
        # The admin API is always on an internal address: never through an HTTP proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=ADMIN_TIMEOUT) as resp:
                return resp.status, _json_object(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json_object(exc.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return 0, {"error": str(getattr(exc, "reason", exc))}

    def experiment_path(self, action: str) -> str:
        return f"/experiments/{urllib.parse.quote(self.experiment, safe='')}/{action}"

    def gate_path(self) -> str:
        if not self.experiment:
            return "/gate"
        return "/gate?" + urllib.parse.urlencode({"experiment": self.experiment})


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}


def exit_code(verdict: Mapping[str, Any] | None, problems: list[str], *, on_inconclusive: str = "pass",
              other_failures: int = 0, error_code: int = 1) -> int:
    """The exit code of a run: the gate's, else Locust's own rule for failures outside the chaos cohort."""
    if problems or verdict is None:
        return 1
    if verdict.get("verdict") == "fail" or verdict.get("tripped"):
        return 1
    if verdict.get("verdict") == "inconclusive" and on_inconclusive == "fail":
        return 1
    if verdict.get("verdict") not in ("pass", "inconclusive"):
        return 1
    return error_code if other_failures else 0


@dataclass(slots=True)
class _Run:
    """What the hooks did in this process's current test."""

    options: GateOptions | None = None
    started: bool = False
    finished: bool = False
    verdict: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


_run = _Run()


def _is_worker(environment: Environment) -> bool:
    return isinstance(environment.runner, WorkerRunner)


def _add_arguments(parser: Any, **_: Any) -> None:
    # On the parser itself, not in a group: only Locust's parser knows is_secret (masked in the web UI).
    parser.add_argument("--mlchaos-admin", env_var="MLCHAOS_ADMIN", default="", metavar="URL",
                       help="mlchaos admin API, e.g. http://127.0.0.1:9000; unset: no gate")
    parser.add_argument("--mlchaos-experiment", env_var="MLCHAOS_EXPERIMENT", default="", metavar="NAME",
                       help="experiment to start and stop with the test and to gate on; unset: every experiment")
    parser.add_argument("--mlchaos-token", env_var="MLCHAOS_ADMIN_TOKEN", default="", metavar="TOKEN",
                       is_secret=True, help="bearer token for the admin API's start and stop calls")
    parser.add_argument("--mlchaos-on-inconclusive", env_var="MLCHAOS_ON_INCONCLUSIVE", default="pass",
                       choices=("pass", "fail"), help="exit code of an inconclusive gate: pass (0, a warning) or fail")
    parser.add_argument("--mlchaos-verdict-file", env_var="MLCHAOS_VERDICT_FILE", default="", metavar="PATH",
                       help="write the gate's verdict and the exit code to this JSON file")


def _on_test_start(environment: Environment, **_: Any) -> None:
    global _run
    if _is_worker(environment):
        return
    opts = GateOptions.from_environment(environment)
    _run = _Run(options=opts)
    if opts is None or not opts.experiment:
        return
    status, body = opts.call("POST", opts.experiment_path("start"))
    if status == 200:
        _run.started = True
        log.info("mlchaos: started experiment %r through %s", opts.experiment, opts.admin)
    else:
        problem = (f"could not start experiment {opts.experiment!r} through {opts.admin}: "
                   f"{status or 'unreachable'} {body.get('error', '')}".rstrip())
        _run.problems.append(problem)
        log.error("mlchaos: %s", problem)


def _finish() -> None:
    opts = _run.options
    if opts is None or _run.finished:
        return
    _run.finished = True
    if _run.started:
        status, body = opts.call("POST", opts.experiment_path("stop"))
        if status == 200:
            log.info("mlchaos: stopped experiment %r", opts.experiment)
        else:
            # Not a gate failure, but the experiment may still be running: say so loudly.
            log.error("mlchaos: could not stop experiment %r: %s %s", opts.experiment, status or "unreachable",
                      body.get("error", ""))
    status, verdict = opts.call("GET", opts.gate_path())
    if status != 200 or "verdict" not in verdict:
        problem = f"could not read the gate at {opts.admin}{opts.gate_path()}: {status or 'unreachable'}"
        _run.problems.append(problem)
        log.error("mlchaos: %s", problem)
        return
    _run.verdict = verdict
    trip = verdict.get("trip") if isinstance(verdict.get("trip"), dict) else {}
    # A trip's own reason: the experiment's current one may only say that this hook stopped it.
    reason = f"{trip.get('guard')} guard: {trip.get('reason')}" if trip else verdict.get("reason", "")
    summary = (f"mlchaos: gate verdict: {verdict['verdict']} (experiment {opts.experiment or '(all)'}, "
               f"chaos {verdict.get('n_chaos')}, control {verdict.get('n_control')}, "
               f"tripped {bool(verdict.get('tripped'))}): {reason}")
    if verdict["verdict"] == "fail" or verdict.get("tripped"):
        log.error(summary)
    elif verdict["verdict"] == "inconclusive":
        log.warning(summary + (" - counted as a failure (--mlchaos-on-inconclusive fail)"
                               if opts.on_inconclusive == "fail" else " - not counted as a failure"))
    else:
        log.info(summary)


def _on_test_stop(environment: Environment, **_: Any) -> None:
    if not _is_worker(environment):
        _finish()


def _other_failures(environment: Environment) -> int:
    """Failed requests outside the chaos cohort (chaos failures are the gate's to judge)."""
    suffix = f" [{COHORTS[0]}]"
    return sum(entry.num_failures for entry in environment.stats.entries.values()
               if not str(entry.name).endswith(suffix))


def _on_quitting(environment: Environment, **_: Any) -> None:
    opts = _run.options
    if opts is None or _is_worker(environment):
        return
    _finish()  # a test stopped by Ctrl-C or SIGTERM may not have fired test_stop
    runner = environment.runner
    other = _other_failures(environment) + (len(runner.exceptions) if runner is not None else 0)
    error_code = int(getattr(environment.parsed_options, "exit_code_on_error", 1))
    code = exit_code(_run.verdict, _run.problems, on_inconclusive=opts.on_inconclusive, other_failures=other,
                     error_code=error_code)
    if locust.log.unhandled_greenlet_exception:
        code = max(code, 2)
    if environment.process_exit_code:  # another hook already failed the run: keep it failed
        code = max(code, environment.process_exit_code)
    environment.process_exit_code = code
    log.info("mlchaos: exit code %d", code)
    if opts.verdict_file:
        record = {"verdict": (_run.verdict or {}).get("verdict"), "exit_code": code, "problems": _run.problems,
                  "other_failures": other, "gate": _run.verdict}
        try:
            with open(opts.verdict_file, "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=2)
        except OSError as exc:
            log.error("mlchaos: could not write %s: %s", opts.verdict_file, exc)


def _register() -> None:
    events.init_command_line_parser.add_listener(_add_arguments)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quitting.add_listener(_on_quitting)


_register()
