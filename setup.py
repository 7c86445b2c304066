"""Compiles the per-request modules with mypyc; everything else installs as plain Python.

Measured (benchmarks/RESULTS.md, A/B with fresh processes): compiled, pass-through serves about 1.5x the
requests per second of the same code interpreted, with 40% less CPU per request. The compiled modules are
the ones listed in HOT; they keep their .py source, which is what runs when the build does not compile: no C
compiler or no Python headers, MLCHAOS_PURE_PYTHON=1, or a compile that fails for any reason (mypy's type
check, mypyc itself, the C compiler). Then the install still succeeds, slower and with the same behaviour;
setup.py prints one line saying why and records it, and `mlchaos --version` says which build is running and,
for plain Python, why (pip shows a build's output only when it fails or under -v).

MLCHAOS_BREAK_BUILD forces a failure, to test the fallback (scripts/check-install.sh does):
  types  mypy is given a module with a type error (as a missing dependency's types would give)
  cc     the C compiler is given an option it refuses
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shlex
import shutil
import sys
import sysconfig
import tempfile
import traceback
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

# Modules every request passes through. Kept to the data plane and what it calls per request: a compiled
# module's classes cannot be monkeypatched or subclassed from Python, which the rest need not give up.
HOT = [
    # the protocol-neutral exchange and the HTTP/1.1 edge
    "proxy/exchange.py",
    "proxy/edges/http1/connection.py",
    "proxy/edges/http1/exchange.py",
    "proxy/edges/http1/pacing.py",
    "proxy/edges/http1/upstream.py",
    "proxy/edges/http1/request.py",
    "proxy/edges/http1/framing.py",
    # what the edges read per request off the plane (native attributes, not lookups on a Python object)
    "proxy/dataplane/state.py",
    # the gRPC edge: its HTTP/2 (frames, windows, HPACK), the relay of each call, its exchange (a compiled
    # Exchange is subclassed only by compiled classes)
    "proxy/edges/grpc/h2/connection.py",
    "proxy/edges/grpc/h2/headers.py",
    "proxy/edges/grpc/relay.py",
    "proxy/edges/grpc/server.py",
    "proxy/edges/grpc/upstream.py",
    "proxy/edges/grpc/exchange.py",
    "proxy/edges/grpc/call.py",
    "proxy/edges/grpc/status.py",
    "proxy/edges/grpc/payload.py",
    # every request an experiment matches: the router, the cohort hash, the metrics, the kill switch's guards
    "proxy/routing.py",
    "proxy/experiments.py",
    "proxy/cohort.py",
    "proxy/metrics.py",
    "proxy/killswitch/guards.py",
    "proxy/killswitch/guard.py",
    "proxy/killswitch/errors_guard.py",
    "proxy/killswitch/latency_guard.py",
    "proxy/killswitch/seatbelt_guard.py",
    "proxy/killswitch/ttft_guard.py",
    "proxy/killswitch/sequential.py",
    "proxy/killswitch/seatbelt.py",
    # faulted requests: the outcome matrix, and the hypothesis's marker scan (only when one is declared)
    "proxy/observe/outcomes.py",
    "proxy/hypothesis/scan.py",
    # the payload path of feature faults: parse, read as a table, mutate, write back
    "proxy/payload/bodies.py",
    "proxy/payload/codec.py",
    "proxy/payload/__init__.py",
    "proxy/payload/table.py",
    "proxy/payload/mutate.py",
    "proxy/payload/adapters/__init__.py",
    "proxy/payload/adapters/base.py",
    "proxy/payload/adapters/v1.py",
    "proxy/payload/adapters/v2.py",
    "proxy/payload/adapters/mlflow.py",
    "proxy/payload/adapters/mlflow_registry.py",
    "proxy/payload/adapters/generic.py",
    "proxy/payload/adapters/feast.py",
    "proxy/payload/adapters/openai.py",
    "proxy/payload/adapters/delimited.py",
    "proxy/payload/adapters/delimited_text.py",
    "proxy/payload/adapters/delimited_bytes.py",
    "proxy/payload/adapters/jsonl.py",
    "proxy/payload/adapters/json_records.py",
    "proxy/payload/adapters/parquet.py",
    "proxy/payload/tabular.py",
    "proxy/payload/adapters/v2_grpc.py",
    "proxy/payload/wire.py",
    # LLM answers of chaos and control: the stream meter and the event framer it runs per chunk
    "proxy/payload/sse.py",
    "proxy/observe/llm.py",
]

HOT_MODULES = tuple(p.removesuffix(".py").replace("/", ".") for p in HOT)
# C of our own, built with HOT (a byte loop mypyc cannot make fast): each module's source is its name's .c.
NATIVE = ["proxy/payload/adapters/_cells.c"]
NATIVE_MODULES = tuple(p.removesuffix(".c").replace("/", ".") for p in NATIVE)
MARKER = "proxy/dataplane/_compiled.py"

# mypyc type-checks what it compiles, following imports into the rest of the package. pyproject.toml's
# build-system requires the runtime dependencies whose types the check needs, so an isolated build checks what
# `make lint` checks; a dependency still missing is unknown (Any): nothing changes at run time, and type: ignore
# comments written for it go unused.
MYPY_FLAGS = ["--ignore-missing-imports", "--no-warn-unused-ignores"]
BREAK = os.environ.get("MLCHAOS_BREAK_BUILD", "")


def _marker(sources: tuple[str, ...], native: tuple[str, ...], digest: str, plain: str) -> str:
    return (f'"""Written by setup.py: the modules it compiled, or why it installed plain Python."""\n\n'
            f"SOURCES = {sources!r}\nNATIVE = {native!r}\nSHA256 = {digest!r}\nPLAIN = {plain!r}\n")


def _plain(why: str) -> list[object]:
    why = " ".join(why.split())[:300]  # one line, whatever the failure printed
    print(f"mlchaos: the data plane is installed as plain Python (slower, same behaviour): {why}", file=sys.stderr)
    Path(MARKER).write_text(_marker((), (), "", why))
    return []


# Commands that only describe the package (metadata, source distribution): nothing to compile.
_DESCRIBE = {"egg_info", "dist_info", "sdist"}


def _forget_builds() -> None:
    """Remove what an earlier in-place build left: the marker and every extension module in the package (one
    of a module no longer in HOT would still shadow its .py) with mypyc's shared libraries beside it."""
    Path(MARKER).unlink(missing_ok=True)
    for built in [*Path("proxy").rglob("*.so"), *Path(".").glob("*__mypyc*.so")]:
        built.unlink()


def _first_error(output: str) -> str:
    errors = [line for line in output.splitlines() if ": error:" in line]
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return errors[0] + more


def _mypycify() -> list[object]:
    from mypyc.build import mypycify

    paths = list(HOT)
    if BREAK == "types":
        broken = Path("build/mlchaos_break_build.py")
        broken.parent.mkdir(exist_ok=True)
        broken.write_text('BROKEN: int = "MLCHAOS_BREAK_BUILD=types"\n')
        paths.append(str(broken))
    # mypyc prints mypy's errors and exits (SystemExit); kept to name the first in the one line, then echoed.
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            # group_name: the shared library is the top-level module proxy__mypyc, listed after proxy in
            # top_level.txt, where a hash name sorts first and tools that take a distribution's first top-level
            # name (chaostoolkit's `chaos discover mlchaos`) would import it instead of the package.
            extensions = list(mypycify([*MYPY_FLAGS, *paths], opt_level="3", debug_level="1", group_name="proxy"))
    except (Exception, SystemExit) as exc:  # any failure of the type check or of mypyc: plain Python
        print(output.getvalue(), end="", file=sys.stderr)
        if isinstance(exc, SystemExit):  # mypy's errors, or a message of mypyc's own
            detail = _first_error(output.getvalue()) if ": error:" in output.getvalue() else str(exc.code)
        else:  # a crash of mypyc
            traceback.print_exc()
            detail = f"{type(exc).__name__}: {exc}"
        return _plain(f"mypyc failed: {detail}")
    print(output.getvalue(), end="", file=sys.stderr)
    if BREAK == "cc":
        for ext in extensions:  # mypyc's extensions share one list of arguments: each gets its own
            ext.extra_compile_args = [*ext.extra_compile_args, "-mlchaos-break-build"]
    return extensions


def _native() -> list[object]:
    """NATIVE's modules: proxy/payload/adapters/_cells.c, the byte loops of ``nan`` on a CSV body (without it
    delimited_bytes.py does the same with numpy, slower)."""
    from setuptools import Extension

    return [Extension(name, [path], extra_compile_args=["-O3"])
            for name, path in zip(NATIVE_MODULES, NATIVE, strict=True)]


def ext_modules() -> list[object]:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    if command in _DESCRIBE:
        return []
    _forget_builds()
    if os.environ.get("MLCHAOS_PURE_PYTHON") == "1":
        return _plain("MLCHAOS_PURE_PYTHON=1")
    # The compiler setuptools will call: $CC when set, else the one Python was built with.
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")[:1]
    if not cc or shutil.which(cc[0]) is None:
        return _plain(f"no C compiler ({cc[0] if cc else 'CC'} not found)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return _plain("no Python headers (Debian: python3-dev)")
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return _plain("mypyc is not installed")
    extensions = _mypycify()
    if extensions:
        extensions.extend(_native())
        # What was compiled, so the package can tell a compiled build from a stale one (a .py or .c edited since).
        digest = hashlib.sha256(b"".join(Path(p).read_bytes() for p in [*HOT, *NATIVE])).hexdigest()
        Path(MARKER).write_text(_marker(HOT_MODULES, NATIVE_MODULES, digest, ""))
    return extensions


class BuildExtOrPlain(build_ext):
    """build_ext that, when compiling or linking fails, leaves no extension module behind and records that the
    data plane is plain Python, instead of failing the install."""

    def run(self) -> None:
        # The compiler writes to file descriptor 2 itself: kept in a file, to name its first error in the one
        # line, and echoed whole either way.
        with tempfile.TemporaryFile() as log:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(log.fileno(), 2)
            try:
                super().run()
            except (Exception, SystemExit) as exc:  # any failure of the C build: plain Python
                failure: BaseException | None = exc
            else:
                failure = None
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                log.seek(0)
                output = log.read().decode(errors="replace")
                print(output, end="", file=sys.stderr)
        if failure is not None:
            self._fall_back(_first_error(output) if ": error:" in output else f"{type(failure).__name__}: {failure}")

    def _fall_back(self, why: str) -> None:
        for ext in self.extensions:
            Path(self.build_lib, self.get_ext_filename(self.get_ext_fullname(ext.name))).unlink(missing_ok=True)
        self.extensions = []  # nothing for install, editable_wheel or the in-place copy to pick up
        _plain(f"the C build failed: {why}")
        # build_py ran before build_ext (build's sub-commands are in that order): its copy says compiled.
        copied = Path(self.build_lib, MARKER)
        if copied.exists():
            shutil.copyfile(MARKER, copied)


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExtOrPlain})
