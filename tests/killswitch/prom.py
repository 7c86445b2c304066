"""A real Prometheus server for tests: started on a free loopback port, scraping given targets every second.

Usage (the binary comes from Debian's ``prometheus`` package; ``scripts/install-prometheus.sh`` installs it)::

    with PrometheusServer({"mlchaos": ["127.0.0.1:9001", "127.0.0.1:9002"]}, tmp_path) as prom:
        prom.wait_for_targets_up(timeout=10)
        prom.wait_for_scrapes_after(time.time(), timeout=5)
        prom.query_by('sum by (cohort) (mlchaos_requests_total)', "cohort")

Every call is blocking and bounded by a timeout; async tests call the ``a*`` variants (run in a thread, so
the event loop keeps serving whatever Prometheus scrapes in the same process).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest
import yaml

from tests.conftest import free_port

__all__ = [
    "PrometheusError", "PrometheusServer", "find_prometheus", "free_port", "requires_prometheus",
]

T = TypeVar("T")

SCRAPE_INTERVAL = "1s"


def find_prometheus() -> str | None:
    """The ``prometheus`` binary: $PROMETHEUS_BIN, else the one on PATH; None when there is none."""
    explicit = os.environ.get("PROMETHEUS_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("prometheus")


requires_prometheus = pytest.mark.skipif(
    find_prometheus() is None,
    reason="no prometheus binary on PATH: run scripts/install-prometheus.sh (make test does)")


class PrometheusError(RuntimeError):
    pass


def _parse_time(value: str) -> float:
    """Prometheus' RFC 3339 timestamps (nanoseconds, 'Z') as Unix seconds; 0 for Go's zero time."""
    if not value or value.startswith("0001-01-01"):
        return 0.0
    return datetime.fromisoformat(value).timestamp()


class PrometheusServer:
    """One Prometheus process with its own config and storage under ``workdir``.

    ``jobs`` maps a job name to ``host:port`` targets; ``metrics_path`` is the same for every job.
    """

    def __init__(self, jobs: Mapping[str, Sequence[str]], workdir: str | os.PathLike[str], *,
                 metrics_path: str = "/metrics", scrape_interval: str = SCRAPE_INTERVAL,
                 binary: str | None = None) -> None:
        self.binary = binary or find_prometheus()
        if self.binary is None:
            raise PrometheusError("no prometheus binary (run scripts/install-prometheus.sh)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        self.metrics_path = metrics_path
        self.scrape_interval = scrape_interval
        self.jobs: dict[str, list[str]] = {name: list(targets) for name, targets in jobs.items()}
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    # -- config

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {"job_name": name, "metrics_path": self.metrics_path, "static_configs": [{"targets": targets}]}
                for name, targets in self.jobs.items()
            ],
        }

    def _write_config(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        os.replace(tmp, self.config_path)

    def set_targets(self, jobs: Mapping[str, Sequence[str]], timeout: float = 10.0) -> None:
        """Replace the scrape targets and reload the running server (``/-/reload``)."""
        self.jobs = {name: list(targets) for name, targets in jobs.items()}
        self._write_config()
        if self.proc is not None:
            self._http("POST", "/-/reload", timeout=timeout)

    # -- lifecycle

    def start(self, timeout: float = 20.0, attempts: int = 3) -> PrometheusServer:
        """Start and wait for ``/-/ready``; a port taken between choosing and binding gets another try."""
        self._write_config()
        last = ""
        for _ in range(attempts):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            storage = self.workdir / f"data-{self.port}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary or "prometheus", f"--config.file={self.config_path}",
                     f"--storage.tsdb.path={storage}", f"--web.listen-address=127.0.0.1:{self.port}",
                     "--web.enable-lifecycle", "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self._http("GET", "/-/ready", timeout=1.0)[0] == 200:
                        return self
                except (OSError, PrometheusError):
                    pass
                time.sleep(0.1)
            last = self.log_tail()
            self.stop()
        raise PrometheusError(f"prometheus did not become ready in {attempts} attempt(s); log:\n{last}")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    # -- HTTP API

    def _http(self, method: str, path: str, params: Mapping[str, str] | None = None,
              timeout: float = 5.0) -> tuple[int, bytes]:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None

    def api(self, path: str, params: Mapping[str, str] | None = None, timeout: float = 5.0) -> Any:
        """``data`` of a ``/api/v1/...`` answer; raises PrometheusError unless its status is success."""
        _, body = self._http("GET", "/api/v1/" + path.lstrip("/"), params, timeout)
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {doc}")
        return doc["data"]

    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [ts, "v"]}, ...]``."""
        data = self.api("query", {"query": promql}, timeout)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str, timeout: float = 5.0) -> float | None:
        """The single value of a query (None when the vector is empty; raises when it has several)."""
        result = self.query(promql, timeout)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{promql!r} has {len(result)} series, not one: {result}")
        return float(result[0]["value"][1])

    def query_by(self, promql: str, label: str, timeout: float = 5.0) -> dict[str, float]:
        """A query's values keyed by one label, e.g. ``query_by("sum by (cohort) (...)", "cohort")``."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql, timeout)}

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets", {"state": "active"})["activeTargets"]
        return active

    # -- waiting, always bounded

    def wait_until(self, probe: Callable[[], T], ok: Callable[[T], bool], *, timeout: float,
                   interval: float = 0.25, what: str = "condition") -> T:
        """Call ``probe`` until ``ok`` accepts its result; raises TimeoutError with the last one."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                value = probe()
                last = value
                if ok(value):
                    return value
            except (OSError, PrometheusError, ValueError, KeyError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what} not reached in {timeout:g}s; last: {last!r}")
            time.sleep(interval)

    def wait_for_targets_up(self, count: int | None = None, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Until every configured target (or ``count`` of them) was scraped and is up."""
        want = count if count is not None else sum(len(t) for t in self.jobs.values())
        return self.wait_until(
            self.targets, lambda ts: sum(1 for t in ts if t.get("health") == "up") >= want,
            timeout=timeout, what=f"{want} target(s) up")

    def wait_for_scrapes_after(self, moment: float, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Until every active target has been scraped (successfully) after ``moment`` (Unix seconds).

        A scrape that *starts* after the moment sees every counter as it was then or later.
        """
        def fresh(ts: list[dict[str, Any]]) -> bool:
            return bool(ts) and all(t.get("health") == "up" and _parse_time(t.get("lastScrape", "")) > moment
                                    for t in ts)

        return self.wait_until(self.targets, fresh, timeout=timeout, what=f"a scrape of every target after {moment}")

    # -- async variants: the same calls in a worker thread

    async def astart(self, timeout: float = 20.0) -> PrometheusServer:
        return await asyncio.to_thread(self.start, timeout)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def aquery(self, promql: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, promql)

    async def aquery_value(self, promql: str) -> float | None:
        return await asyncio.to_thread(self.query_value, promql)

    async def aquery_by(self, promql: str, label: str) -> dict[str, float]:
        return await asyncio.to_thread(self.query_by, promql, label)

    async def await_targets_up(self, count: int | None = None, timeout: float = 15.0) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.wait_for_targets_up, count, timeout)

    async def await_scrapes_after(self, moment: float, timeout: float = 10.0) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.wait_for_scrapes_after, moment, timeout)

    async def await_until(self, probe: Callable[[], T], ok: Callable[[T], bool], *, timeout: float,
                          what: str = "condition") -> T:
        return await asyncio.to_thread(lambda: self.wait_until(probe, ok, timeout=timeout, what=what))
