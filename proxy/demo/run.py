"""``mlchaos demo``: the demo model, a sidecar in front of it, and load through both, in one process.

Everything binds free ports on 127.0.0.1, runs for ``duration`` seconds, prints the per-cohort table and
a one-paragraph reading, and shuts down. The policy is ``policies/demo.yaml`` (or the copy packaged next
to this module); its addresses are replaced by the ones chosen at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import sys
from pathlib import Path
from typing import TextIO

from ..app import Sidecar
from ..declare.units import Address
from ..policy import load_policy_file
from ..policy.model import Policy, Upstream
from .driver import Progress, Results, drive, format_progress, format_table
from .model import start_model

__all__ = ["default_policy_path", "main", "reading", "retarget", "run_demo"]

HOST = "127.0.0.1"
# The demo model answers in 10 ms plus an exponential 5 ms on average, like a small real model. With 8
# requests in flight that is about 500 req/s: load generator, sidecar and model share one event loop, and
# a saturated loop would add its own queueing to every cohort's latency and blur the comparison.
MODEL_LATENCY = 0.010
MODEL_JITTER = 0.005
# How often the progress line is rewritten on a terminal, and printed anew elsewhere (logs, CI).
TTY_PROGRESS_INTERVAL = 0.25
PLAIN_PROGRESS_INTERVAL = 2.0


def default_policy_path() -> Path:
    """``policies/demo.yaml`` of the source tree when there is one, else the packaged copy."""
    here = Path(__file__).resolve().parent
    repo = here.parents[1] / "policies" / "demo.yaml"
    return repo if repo.is_file() else here / "demo.yaml"


def retarget(policy: Policy, model_port: int) -> Policy:
    """The policy with free loopback ports to listen on and the demo model as its upstream."""
    upstream = Upstream(name="primary", url=f"http://{HOST}:{model_port}", host=HOST, port=model_port,
                        authority=f"{HOST}:{model_port}")
    return dataclasses.replace(
        policy,
        listen=Address(HOST, 0),
        upstream=upstream,
        admin=dataclasses.replace(policy.admin, listen=Address(HOST, 0)),
    )


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f} ms"


def reading(results: Results) -> str:
    """A few plain sentences on what the table shows."""
    chaos, control, none = results["chaos"], results["control"], results["none"]
    if chaos.requests == 0:
        return ("No request landed in the chaos cohort: is the experiment enabled, does it reveal cohorts "
                "(reveal: {cohort: true}), and did the run last long enough?")
    injected = sum(sum(s.faults.values()) for s in results.cohorts.values())
    kinds = " ".join(f"{k}={n}" for k, n in chaos.faults.most_common())
    parts = [f"chaos p99 is {_ms(chaos.p99_ms)} against control {_ms(control.p99_ms)}"]
    if control.p99_ms > 0 and not math.isnan(chaos.p99_ms / control.p99_ms):
        parts[0] += f" ({chaos.p99_ms / control.p99_ms:.1f}x)"
    parts.append(f"{injected} faults injected" + (f" ({kinds})" if kinds else ""))
    parts.append(f"chaos errors {100 * chaos.error_rate:.1f}% against control "
                 f"{100 * control.error_rate:.1f}%")
    none_faults = sum(none.faults.values())
    if none.errors == 0 and none_faults == 0:
        parts.append(f"the none cohort is untouched ({none.requests} requests, no errors, "
                     f"p99 {_ms(none.p99_ms)})")
    else:
        parts.append(f"the none cohort saw {none.errors} errors and {none_faults} faults: it should see none")
    return "; ".join(parts) + "."


async def run_demo(*, duration: float = 20.0, policy_path: str | None = None, out: TextIO = sys.stdout,
                   concurrency: int = 8, seed: int = 0) -> int:
    """Run the demo end to end; 0 on success, 1 when the policy, the model or the sidecar fails."""
    path = Path(policy_path) if policy_path else default_policy_path()
    try:
        policy = load_policy_file(path)
    except Exception as exc:  # PolicyError lists every problem in its message
        print(f"mlchaos demo: cannot load {path}: {exc}", file=out)
        return 1
    try:
        model_runner, model_port = await start_model(HOST, 0, latency=MODEL_LATENCY, jitter=MODEL_JITTER,
                                                     seed=seed)
    except OSError as exc:
        print(f"mlchaos demo: the demo model failed to start: {exc}", file=out)
        return 1
    try:
        policy = retarget(policy, model_port)
        try:
            sidecar = Sidecar(policy)
        except Exception as exc:
            print(f"mlchaos demo: the sidecar failed to start: {type(exc).__name__}: {exc}", file=out)
            return 1
        try:
            await sidecar.start()
        except Exception as exc:
            print(f"mlchaos demo: the sidecar failed to start: {type(exc).__name__}: {exc}", file=out)
            await sidecar.stop(drain=0)  # whatever it had opened before failing
            return 1
        try:
            _intro(policy, path, model_port, sidecar, duration, out)
            results = await _load(f"http://{HOST}:{sidecar.proxy_port}", duration, concurrency, seed, out)
            # Whatever the kill switch did, read before the sidecar goes.
            trips = {name: st.tripped for name, st in sidecar.experiments.states.items() if st.tripped}
        finally:
            await sidecar.stop()
    finally:
        await model_runner.cleanup()
    print(file=out)
    print(format_table(results), file=out)
    print(file=out)
    print(f"{results.requests} requests in {results.elapsed:.1f} s ({results.rate:.0f} req/s).", file=out)
    print(reading(results), file=out)
    for name, trip in trips.items():
        print(f"The kill switch stopped {name} after {trip.get('n_chaos')} chaos requests "
              f"({trip.get('errors_chaos')} errors; guard: {trip.get('guard')}, {trip.get('reason')}): "
              "from then on every request was left alone. Re-arm with POST /experiments/NAME/rearm.", file=out)
    return 0


def _intro(policy: Policy, path: Path, model_port: int, sidecar: Sidecar, duration: float,
           out: TextIO) -> None:
    print(f"mlchaos demo: policy {path}", file=out)
    print(f"  model    http://{HOST}:{model_port}  (iris, KServe V1 + Open Inference V2)", file=out)
    print(f"  sidecar  http://{HOST}:{sidecar.proxy_port}  (admin http://{HOST}:{sidecar.admin_port})",
          file=out)
    for exp in policy.experiments:
        faults = ", ".join(f"{f.type} p={f.probability:g}" for f in exp.faults) or "no faults"
        print(f"  experiment {exp.name}: chaos {exp.chaos_percent:g}%, control {exp.control_percent:g}%, "
              f"sticky on {exp.sticky_key or 'nothing'}; {faults}", file=out)
    print(f"Sending traffic for {duration:g} s ...", file=out)
    out.flush()


async def _load(url: str, duration: float, concurrency: int, seed: int, out: TextIO) -> Results:
    tty = _isatty(out)
    width = 0

    def show(p: Progress) -> None:
        nonlocal width
        line = format_progress(p)
        if tty:
            out.write("\r" + line.ljust(width))
            width = max(width, len(line))
        else:
            out.write(line + "\n")
        out.flush()

    results = await drive(url, duration=duration, concurrency=concurrency, seed=seed, on_progress=show,
                          progress_interval=TTY_PROGRESS_INTERVAL if tty else PLAIN_PROGRESS_INTERVAL)
    if tty:
        out.write("\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.demo.run", description="Run the mlchaos demo.")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic (default 20)")
    parser.add_argument("--policy", default=None, help="policy file (default policies/demo.yaml)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return asyncio.run(run_demo(duration=args.duration, policy_path=args.policy,
                                concurrency=args.concurrency, seed=args.seed))


if __name__ == "__main__":
    sys.exit(main())
