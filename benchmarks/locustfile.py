"""Load test a model server through mlchaos with Locust; chaos and control side by side, gated by the kill switch.

    pip install -e '.[load]'
    locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 2m --host http://127.0.0.1:8000 \\
        --mlchaos-admin http://127.0.0.1:9000 --mlchaos-experiment demo-slow-and-failing

Requests are named by cohort (``v2 infer [chaos]``, ``v2 infer [control]``, ``v2 infer [none]``; the policy needs
``reveal: {cohort: true}``). With ``--mlchaos-admin``, the experiment is started with the test, stopped at its
end, and the exit code is non-zero when its gate fails (see ``proxy.locust``). Distributed:
``--master --expect-workers 2`` here and ``--worker --master-host HOST`` on each worker.

Environment: ``MLCHAOS_MODEL`` (model name, default ``iris``), ``MLCHAOS_USER_RPS`` (requests per second of
each Locust user, default 10), ``MLCHAOS_PROTOCOLS`` (``v1,v2`` by default; ``v2`` for MLServer or Triton).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from locust import TaskSet, constant_throughput

from proxy.locust import InferenceUser


def _tasks() -> list[TaskSet | Callable[..., Any]]:
    """Three V2 calls for one V1 call, of the protocols MLCHAOS_PROTOCOLS names."""
    wanted = {p.strip() for p in os.environ.get("MLCHAOS_PROTOCOLS", "v1,v2").split(",")}
    out: list[TaskSet | Callable[..., Any]] = []
    if "v2" in wanted:
        out += [InferenceUser.v2_infer] * 3
    if "v1" in wanted:
        out.append(InferenceUser.v1_predict)
    if not out:
        raise ValueError(f"MLCHAOS_PROTOCOLS names neither v1 nor v2: {os.environ.get('MLCHAOS_PROTOCOLS')!r}")
    return out


class ModelUser(InferenceUser):
    model_name = os.environ.get("MLCHAOS_MODEL", "iris")
    wait_time = constant_throughput(float(os.environ.get("MLCHAOS_USER_RPS", "10")))
    tasks = _tasks()
