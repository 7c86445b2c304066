"""``mlchaos``: run the sidecar, check a policy, print its schema, or watch the demo."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import platform
import signal
import sys
from collections.abc import Sequence

import orjson

from . import __version__
from .dataplane import build_note
from .logs import event, setup_logging

DESCRIPTION = """\
mlchaos: a chaos-engineering sidecar for model servers.

It forwards every request to the model untouched, except a small chaos cohort
(1-5% of traffic, set by the policy) that gets faults, and an equal control cohort
that is measured the same way but left alone, so the two can be compared.
"""

EPILOG = """\
examples:
  mlchaos demo                                   # three experiments on an embedded ML system: verdicts, report
  mlchaos demo --classic                         # 20 s of delays and 503s on the embedded iris model
  mlchaos demo --llm                             # the same for an embedded streaming LLM and chat clients
  mlchaos validate policies/example.yaml         # check a policy; exit 1 with every error
  mlchaos run --config policy.yaml               # serve; SIGHUP or a file change reloads
  mlchaos run --config policy.yaml --upstream http://127.0.0.1:8080 --listen 0.0.0.0:8000
  mlchaos schema > mlchaos.schema.json           # JSON Schema for editors
  mlchaos gate --admin http://127.0.0.1:9000 --experiment slow-model   # exit 0 pass, 1 fail, 2 inconclusive
  mlchaos gate --prometheus http://prometheus:9090 --experiment slow-model
  mlchaos report --admin http://127.0.0.1:9000 --experiment slow-model --out report.html
  mlchaos expectations --suite feed.json --samples /var/lib/mlchaos/samples   # exit 1 when a fault is missed

admin API (127.0.0.1:9000 by default; mutating calls need
'Authorization: Bearer $MLCHAOS_ADMIN_TOKEN' when that variable is set):
  GET /healthz  GET /readyz  GET /metrics  GET /experiments  GET /experiments/NAME/report  GET /policy
  POST /experiments/NAME/start  POST /experiments/NAME/stop  POST /experiments/NAME/rearm
  POST /halt  POST /policy  GET /gate  POST /gate/flagger  POST /gate/flagger/rollback
"""


def _duration(text: str) -> float:
    from .declare.units import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 1:
        raise argparse.ArgumentTypeError("at least 1s")
    return seconds


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlchaos", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mlchaos {__version__} (data plane: {build_note()})")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="serve: proxy traffic per a policy file",
                         description="Serve the data plane and the admin API per a policy file.")
    run.add_argument("--config", "-c", required=True, metavar="FILE", help="policy file (YAML)")
    run.add_argument("--listen", metavar="ADDR", help="override the policy's listen address (host:port)")
    run.add_argument("--upstream", metavar="URL", help="override the policy's upstream URL")
    run.add_argument("--admin", metavar="ADDR", help="override the admin API's address (host:port)")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.add_argument("--no-uvloop", action="store_true", help="use asyncio's default event loop")

    val = sub.add_parser("validate", help="check a policy file and print every problem",
                         description="Check a policy file. Exit 0 and print a summary when it is valid; "
                                     "exit 1 and print each problem with its path otherwise.")
    val.add_argument("file", metavar="FILE")

    sub.add_parser("schema", help="print the JSON Schema of the policy file",
                   description="Print the JSON Schema (draft 2020-12) of the policy file, for editors.")

    gate = sub.add_parser("gate", help="ask for a rollout verdict; exit 0 pass, 1 fail, 2 inconclusive",
                          description="Print the rollout gate's verdict and exit 0 (pass), 1 (fail) or 2 "
                                      "(inconclusive: not enough data yet). --admin asks one sidecar; "
                                      "--prometheus runs the error guard on counts summed over every sidecar.")
    where = gate.add_mutually_exclusive_group(required=True)
    where.add_argument("--admin", metavar="URL", help="a sidecar's admin API, e.g. http://127.0.0.1:9000")
    where.add_argument("--prometheus", metavar="URL", help="a Prometheus server scraping the sidecars")
    gate.add_argument("--experiment", metavar="NAME", help="one experiment (required with --prometheus)")
    gate.add_argument("--alpha", type=float, default=0.01, help="--prometheus: the guard's alpha (0.01)")
    gate.add_argument("--min-requests", type=int, default=100,
                      help="--prometheus: chaos requests needed before pass or fail on counts (100)")
    gate.add_argument("--window", metavar="DURATION", type=_duration,
                      help="--prometheus: judge the last DURATION only (e.g. 15m; at least 1s), not the sidecars' "
                           "lifetime: after a re-arm, a window shorter than the time since leaves old errors out")
    gate.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")

    report = sub.add_parser("report", help="write an experiment's report as a self-contained HTML page",
                            description="Fetch GET /experiments/NAME/report from a sidecar's admin API and write "
                                        "one HTML page with plots: latency per cohort, prediction histograms, "
                                        "drift over time.")
    report.add_argument("--admin", metavar="URL", required=True, help="e.g. http://127.0.0.1:9000")
    report.add_argument("--experiment", metavar="NAME", help="default: the only experiment of the policy")
    report.add_argument("--out", metavar="FILE", default="report.html")
    report.add_argument("--json", metavar="FILE", help="also write the report's data as JSON")

    expect = sub.add_parser(
        "expectations", help="run a Great Expectations suite over an experiment's samples: which faults it caught",
        description="Run a Great Expectations suite (GE's JSON) over the samples an experiment's samples block "
                    "wrote, in a process of its own, and judge each expectation per fault: caught (passed on "
                    "control, failed on chaos), missed (passed on both) or broken (failed on control). Exit 0 "
                    "every fault caught, 1 a fault missed, 3 none missed but the suite fails on control, 2 the "
                    "run failed.")
    expect.add_argument("--suite", required=True, metavar="FILE", help="the expectation suite (JSON)")
    expect.add_argument("--samples", required=True, metavar="DIR",
                        help="the experiment's samples.dir, or one experiment's directory under it")
    expect.add_argument("--python", metavar="PY", help="an interpreter with great_expectations (default: this one "
                                                       "if it has it, else scripts/data-servers.sh's venv)")

    demo = sub.add_parser("demo", help="three chaos experiments on an embedded ML system, with verdicts",
                          description="Start an embedded inference service, its feature store and its model "
                                      "behind three mlchaos sidecars on loopback, drive load, judge three "
                                      "experiments' hypotheses, print one table and write report.html.")
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="seconds of load (default 45; 20 with --classic or --llm)")
    demo.add_argument("--report-dir", metavar="DIR", default="mlchaos-demo", help="where report.html goes")
    demo.add_argument("--classic", action="store_true",
                      help="the one-sidecar demo instead: delays and 503s on the embedded iris model, per cohort")
    demo.add_argument("--config", metavar="FILE",
                      help="policy of the one-sidecar demo (implies --classic; default policies/demo.yaml, or "
                           "llm.yaml with --llm)")
    demo.add_argument("--llm", action="store_true",
                      help="an embedded streaming LLM (OpenAI-compatible) and chat clients instead: per-cohort time "
                           "to first token and stream completion (policies/llm.yaml)")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    if args.listen:
        out["listen"] = args.listen
    if args.upstream:
        out["upstream"] = args.upstream
    if args.admin:
        out["admin.listen"] = args.admin
    return out


# glibc's mallopt parameters (malloc.h), and the values the sidecar runs with (see keep_freed_memory).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
HEAP_BLOCKS_BELOW = 8 * 1024 * 1024
KEEP_FREE_HEAP = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks of a few MB instead of returning them to the kernel at once; True
    when set.

    A chaos answer that rewrites a data feed's file (``nan`` on a 1 MB CSV) allocates and frees a few buffers of
    the body's size: the body held, the separators' masks and offsets, the body written back. With glibc's
    defaults such blocks are mapped afresh, or the heap's top trimmed after them, and every 4 KiB touched again
    is a page fault. Measured through nginx (compiled, 1 MB objects, CPU of the sidecar per request): such an
    answer 3.95 ms -> 2.1 ms, holding and scanning alone 3.4 -> 1.3 ms; pass-through unchanged (0.36 ms); peak
    resident size +4 MB. Here blocks below 8 MiB come from the heap and up to 32 MiB of free heap is kept: the
    resident size stays near its peak instead of following it down. Only glibc has mallopt's parameters (musl,
    macOS: nothing is set); an operator's own MALLOC_*_ or GLIBC_TUNABLES settings are left to act."""
    if any(k.startswith("MALLOC_") for k in os.environ) or "GLIBC_TUNABLES" in os.environ:
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCKS_BELOW)) and \
            bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREE_HEAP))
    except (OSError, AttributeError):
        return False


def _use_uvloop(disabled: bool) -> None:
    if disabled:
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(args: argparse.Namespace) -> int:
    from .app import Sidecar, StartupError
    from .policy import PolicyError

    overrides = _overrides(args)
    try:
        with open(args.config, encoding="utf-8") as fh:
            text = fh.read()
        from .app import compile_with_overrides
        policy = compile_with_overrides(text, overrides)
    except OSError as exc:
        print(f"mlchaos: cannot read {args.config}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except PolicyError as exc:
        print(f"mlchaos: {args.config} is not a valid policy:", file=sys.stderr)
        for line in exc.lines():
            print(f"  {line}", file=sys.stderr)
        return 1
    sidecar = Sidecar(policy, policy_path=args.config, overrides=overrides)
    try:
        await sidecar.start()
    except StartupError as exc:
        print(f"mlchaos: {exc}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: sidecar.reload_file("SIGHUP"))
    await stop.wait()
    event("stopping", drain_seconds=sidecar.policy.timeouts.drain)
    await sidecar.stop()
    event("stopped")
    return 0


def _validate(path: str) -> int:
    from .app import _summary
    from .policy import PolicyError, load_policy_file

    try:
        policy = load_policy_file(path)
    except PolicyError as exc:
        for line in exc.lines():
            print(line)
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{path}: valid: {_summary(policy)}")
    return 0


def _gate(args: argparse.Namespace) -> int:
    import os
    import urllib.error

    from .gate import EXIT_CODES, gate_from_admin, gate_from_prometheus

    try:
        if args.admin:
            verdict = gate_from_admin(args.admin, args.experiment, token=os.environ.get("MLCHAOS_ADMIN_TOKEN"),
                                      timeout=args.timeout)
        else:
            if not args.experiment:
                print("mlchaos gate: --prometheus needs --experiment", file=sys.stderr)
                return 2
            verdict = gate_from_prometheus(args.prometheus, args.experiment, alpha=args.alpha,
                                           min_requests=args.min_requests, timeout=args.timeout, window=args.window)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        # No answer is no evidence: inconclusive, so a pipeline waits instead of promoting.
        print(f"mlchaos gate: no verdict: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(orjson.dumps(verdict, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_CODES[verdict["verdict"]]


def _report(args: argparse.Namespace) -> int:
    import os
    import urllib.error
    from urllib.parse import quote

    from .gate import _get_json
    from .observe.report import render_report

    token = os.environ.get("MLCHAOS_ADMIN_TOKEN")
    base = args.admin.rstrip("/")
    try:
        name = args.experiment
        if name is None:
            exps = _get_json(base + "/experiments", token, 10.0).get("experiments", [])
            if len(exps) != 1:
                names = ", ".join(e.get("name", "?") for e in exps) or "none"
                print(f"mlchaos report: name one --experiment (the policy has: {names})", file=sys.stderr)
                return 2
            name = exps[0]["name"]
        data = _get_json(f"{base}/experiments/{quote(name)}/report", token, 10.0)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        print(f"mlchaos report: cannot fetch the report: {exc}", file=sys.stderr)
        return 1
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(render_report(data))
    if args.json:
        with open(args.json, "wb") as fb:
            fb.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    print(f"wrote {args.out}")
    return 0


def _expectations(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .expectations import EXIT_ERROR, ExpectationsError, exit_status, run, table_text

    try:
        verdicts = run(Path(args.suite), Path(args.samples), args.python)
    except ExpectationsError as exc:
        print(f"mlchaos expectations: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(table_text(verdicts))
    return exit_status(verdicts)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        setup_logging(args.log_level)
        _use_uvloop(args.no_uvloop)
        keep_freed_memory()
        return asyncio.run(_serve(args))
    if args.command == "validate":
        return _validate(args.file)
    if args.command == "schema":
        from .policy import policy_schema

        sys.stdout.write(orjson.dumps(policy_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if args.command == "gate":
        return _gate(args)
    if args.command == "report":
        return _report(args)
    if args.command == "expectations":
        return _expectations(args)
    if args.command == "demo":
        setup_logging("warning")
        _use_uvloop(False)
        short = 20.0 if args.duration is None else args.duration
        if args.llm:
            from .demo.llm_run import run_llm_demo

            return asyncio.run(run_llm_demo(duration=short, policy_path=args.config))
        if args.classic or args.config:
            from .demo.run import run_demo

            return asyncio.run(run_demo(duration=short, policy_path=args.config))
        from .demo.story import run_story

        seconds = 45.0 if args.duration is None else args.duration
        return asyncio.run(run_story(seconds=seconds, report_dir=args.report_dir))
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
