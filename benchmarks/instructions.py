#!/usr/bin/env python3
"""Instructions per request of the data plane, the payload path and prediction bookkeeping, counted by callgrind.

On this shared 2-core machine throughput ratios move by 10-15 points from one run to the next; instruction
counts do not (the same build gives the same count to within a fraction of a percent), so they are what A/B
runs of the per-request code compare. Counted in-process, after a warm-up, with callgrind's instrumentation
switched on only around the measured loop:

- ``payload``: one chaos request's payload work under the benchmark's shift fault (``policies/shift.yaml``):
  parse the KServe V1 body, read it as a table, shift it, write it back, serialize it;
- ``observe``: one response's prediction bookkeeping (what the sidecar's background task does for up to
  ``observe.max_rate`` responses a second): submit, then parse and record in slices of 32;
- ``passthrough`` and ``shift``: one request through a real sidecar in the same process (a raw client on a
  kept-alive connection, a raw upstream), with no experiment, or forced into the chaos cohort of the shift
  experiment: the whole per-request path. ``--python`` counts another build's interpreter (a previous
  release's venv), so two builds compare exactly.

Instruction counts are not time: a path that misses the caches costs more per instruction (see RESULTS.md).
Installs valgrind with apt-get when it is missing (as root).

    python benchmarks/instructions.py [--requests 2000] [--only payload,observe,passthrough,shift]
    python benchmarks/instructions.py --only passthrough,shift --python /opt/mlchaos-0.1.0/bin/python
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BODY = b'{"instances":[[1.0,2.0,3.0,4.0],[5.0,6.0,7.0,8.0]]}'  # the benchmark's request (post.lua)
ANSWER = b'{"predictions":[[0.12,0.88],[0.91,0.09]],"model_name":"bench","model_version":"1"}'  # its upstream's
WARMUP = 3000


def payload_loop() -> Callable[[], object]:
    import yaml

    from proxy.faults.shift import Shift
    from proxy.payload import dumps, get_adapter, loads
    from proxy.payload.bodies import adapter_options
    from proxy.policy.model import PayloadSpec

    policy = yaml.safe_load((HERE / "policies" / "shift.yaml").read_text())["experiments"][0]
    spec = PayloadSpec(format=policy["payload"]["format"])
    options, adapter = adapter_options(spec), get_adapter(spec.format)
    params = {k: v for k, v in policy["faults"][0].items() if k not in ("type", "probability")}
    fault = Shift(**params)

    def once() -> object:
        parsed = adapter.read(loads(BODY), options)
        assert parsed is not None
        mutation = fault.mutate(parsed.table, None)  # type: ignore[arg-type]  # shift reads no context
        return dumps(adapter.write(parsed, mutation.table, options), nan_token=False)

    return once


def observe_loop() -> Callable[[], object]:
    from proxy.observe.observer import PredictionObserver
    from proxy.payload.bodies import adapter_options
    from proxy.policy.model import ObserveSpec, PayloadSpec

    spec = PayloadSpec(format="v1")
    obs = PredictionObserver("bench", ObserveSpec(), spec, adapter_options(spec))
    state = {"i": 0}

    def once() -> object:
        state["i"] += 1
        obs.submit(state["i"] & 1, "/", [ANSWER])
        if len(obs.queue) >= 32:
            obs.process(limit=32)
        return None

    return once


def _proxy_loop(experiments: list[dict[str, object]], headers: bytes) -> Callable[[], object]:
    """One request through a real sidecar in this process, from a raw client on a kept-alive connection to a
    raw upstream that answers ANSWER: the whole per-request path of the data plane (the client and upstream
    cost the same whichever build runs, so a difference between builds is the proxy's)."""
    import asyncio

    import uvloop

    from proxy.app import Sidecar
    from proxy.policy import compile_policy

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(ANSWER), ANSWER)

    class Upstream(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport, self.buf = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while (end := self.buf.find(b"\r\n\r\n")) >= 0:
                length = re.search(rb"(?i)content-length: *(\d+)", self.buf[:end])
                size = end + 4 + (int(length.group(1)) if length else 0)
                if len(self.buf) < size:
                    return
                self.buf = self.buf[size:]
                self.transport.write(answer)  # type: ignore[attr-defined]

    server = loop.run_until_complete(loop.create_server(Upstream, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    policy = compile_policy({"listen": "127.0.0.1:0", "upstream": f"http://127.0.0.1:{port}",
                             "admin": {"listen": "127.0.0.1:0"}, "cohort_override": {"enabled": True},
                             "experiments": experiments})
    sidecar = Sidecar(policy, env={"MLCHAOS_OVERRIDE_TOKEN": "t"})
    loop.run_until_complete(sidecar.start())
    reader, writer = loop.run_until_complete(asyncio.open_connection("127.0.0.1", sidecar.proxy_port))
    request = (b"POST /v1/models/bench:predict HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
               b"%scontent-length: %d\r\n\r\n%s" % (headers, len(BODY), BODY))

    async def roundtrip() -> None:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        assert length is not None, head
        await reader.readexactly(int(length.group(1)))

    return lambda: loop.run_until_complete(roundtrip())


def passthrough_loop() -> Callable[[], object]:
    return _proxy_loop([], b"")


def shift_loop() -> Callable[[], object]:
    import yaml

    exp = yaml.safe_load((HERE / "policies" / "shift.yaml").read_text())["experiments"][0]
    exp = {**exp, "kill_switch": {"enabled": False}}  # every request is forced into chaos: no guard may stop it
    return _proxy_loop([exp], b"x-mlchaos-cohort: chaos\r\nx-mlchaos-token: t\r\n")


def experiment_loop() -> Callable[[], object]:
    """The benchmark's shift experiment as run.py and paired.py run it: 5% chaos, 5% control, the rest matched
    and untouched, drawn per request (a mean over the loop's requests)."""
    import yaml

    return _proxy_loop(yaml.safe_load((HERE / "policies" / "shift.yaml").read_text())["experiments"], b"")


LOOPS: dict[str, Callable[[], Callable[[], object]]] = {
    "payload": payload_loop, "observe": observe_loop, "passthrough": passthrough_loop, "shift": shift_loop,
    "experiment": experiment_loop,
}


def measured(name: str, n: int) -> None:
    """Run inside valgrind: warm up, switch the instrumentation on, run ``n`` requests, switch it off."""
    once = LOOPS[name]()
    for _ in range(WARMUP):
        once()
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    for _ in range(n):
        once()
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)


def count(name: str, n: int, python: str) -> float:
    with tempfile.TemporaryDirectory(prefix="mlchaos-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        # Run from / so that the interpreter imports its own installed mlchaos, not this checkout's sources.
        subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                        python, __file__, "--measure", name, "--requests", str(n)],
                       check=True, capture_output=True, cwd="/", timeout=1800)
        text = subprocess.run(["callgrind_annotate", str(out)], check=True, capture_output=True, text=True).stdout
    m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text) or re.search(r"([\d,]+)\s+PROGRAM TOTALS", text)
    if m is None:
        raise SystemExit(f"no total in callgrind_annotate's output:\n{text[:2000]}")
    return int(m.group(1).replace(",", "")) / n


def ensure_valgrind() -> None:
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode == 0:
        return
    if os.geteuid() != 0:
        raise SystemExit("valgrind is missing: apt-get install valgrind")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=900)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "valgrind"], check=True, env=env,
                   timeout=900)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="requests counted per loop (after a warm-up)")
    ap.add_argument("--only", default=",".join(LOOPS), help="comma-separated: " + ", ".join(LOOPS))
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter whose mlchaos is counted (another build's venv, to compare two builds)")
    ap.add_argument("--measure", choices=sorted(LOOPS), help=argparse.SUPPRESS)  # the run inside valgrind
    args = ap.parse_args()
    if args.measure:
        measured(args.measure, args.requests)
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(LOOPS))
    if unknown:
        ap.error(f"unknown loop(s): {', '.join(unknown)}")
    ensure_valgrind()
    version = subprocess.run([args.python, "-m", "proxy", "--version"], capture_output=True, text=True,
                             cwd="/", timeout=60).stdout.strip()
    print(f"{version} ({args.python}); {args.requests} requests per loop after {WARMUP} of warm-up")
    for name in names:
        print(f"{name}: {count(name, args.requests, args.python):,.0f} instructions per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
