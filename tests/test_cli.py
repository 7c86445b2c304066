"""The ``mlchaos`` command, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import proxy
from proxy.cli import keep_freed_memory
from proxy.dataplane import build_note
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
MLCHAOS = str(Path(sys.executable).with_name("mlchaos"))


def mlchaos(*args: str, timeout: float = 8, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLCHAOS, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def write_policy(tmp_path: Path, doc: dict[str, object] | str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


VALID: dict[str, object] = {
    "listen": "127.0.0.1:0", "upstream": "http://127.0.0.1:9", "admin": {"listen": "127.0.0.1:0"},
    "experiments": [{"name": "a", "chaos": 2, "faults": [{"type": "abort", "status": 503}]},
                    {"name": "b", "chaos": 1, "enabled": False}],
}
BROKEN: dict[str, object] = {
    "listen": "127.0.0.1:0", "upstream": "ftp://model", "admin": {"listen": "127.0.0.1:0"},
    "experiments": [
        {"name": "a", "chaos": 2, "faults": [{"type": "abort", "probability": 1.5}]},
        {"name": "b", "chaos": 1, "faults": [{"type": "teleport"}]},
    ],
}
BROKEN_LINES = [
    "experiments[0].faults[0].probability: must be between 0 and 1",
    "experiments[1].faults[0].type: unknown fault type 'teleport'",
    "upstream: expected an http:// URL",
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port with a listener on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_version_prints_the_package_version() -> None:
    out = mlchaos("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"mlchaos {proxy.__version__} (data plane: {build_note()})"


def test_help_names_every_command() -> None:
    out = mlchaos("--help")
    assert out.returncode == 0
    for command in ("run", "validate", "schema", "demo"):
        assert f"\n    {command} " in out.stdout, command


def test_no_command_prints_help_and_exits_2() -> None:
    out = mlchaos()
    assert out.returncode == 2
    assert "usage: mlchaos" in out.stdout


def test_validate_accepts_a_valid_policy_with_a_one_line_summary(tmp_path: Path) -> None:
    path = write_policy(tmp_path, VALID)
    out = mlchaos("validate", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: valid: 2 experiment(s), 1 enabled, 2% chaos")


@pytest.mark.parametrize("shipped", ["policies/example.yaml", "policies/demo.yaml", "policies/registry.yaml",
                                     "policies/feast.yaml", "policies/llm.yaml", "policies/data-pipeline-s3.yaml",
                                     "policies/data-pipeline-http.yaml"])
def test_the_shipped_policies_validate(shipped: str) -> None:
    out = mlchaos("validate", shipped)
    assert out.returncode == 0, out.stdout + out.stderr


def test_validate_lists_every_problem_with_its_path(tmp_path: Path) -> None:
    path = write_policy(tmp_path, BROKEN)
    out = mlchaos("validate", str(path))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    for expected in BROKEN_LINES:
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    assert f"{path}: {len(lines)} problem(s)" in out.stderr


def test_validate_reports_yaml_syntax_errors_with_a_line(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "upstream: http://127.0.0.1:9\nexperiments: [\n")
    out = mlchaos("validate", str(path))
    assert out.returncode == 1
    assert "invalid YAML at line" in out.stdout


def test_validate_reports_a_missing_file(tmp_path: Path) -> None:
    out = mlchaos("validate", str(tmp_path / "absent.yaml"))
    assert out.returncode == 1
    assert "cannot read the policy file" in out.stdout


def test_schema_prints_a_json_schema_of_the_policy() -> None:
    out = mlchaos("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert "experiments" in schema["properties"]
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"name", "chaos"} <= set(schema["$defs"]["experiment"]["required"])


def test_run_with_an_invalid_policy_exits_1_and_lists_the_problems(tmp_path: Path) -> None:
    path = write_policy(tmp_path, BROKEN)
    out = mlchaos("run", "--config", str(path))
    assert out.returncode == 1
    assert f"{path} is not a valid policy" in out.stderr
    for expected in BROKEN_LINES:
        assert f"  {expected}" in out.stderr, expected


def test_run_with_an_invalid_override_exits_1_naming_the_setting(tmp_path: Path) -> None:
    out = mlchaos("run", "--config", str(write_policy(tmp_path, VALID)), "--listen", "nowhere")
    assert out.returncode == 1
    assert "  listen: expected host:port" in out.stderr


def test_run_with_a_missing_config_exits_1(tmp_path: Path) -> None:
    out = mlchaos("run", "--config", str(tmp_path / "absent.yaml"))
    assert out.returncode == 1
    assert "cannot read" in out.stderr


def test_run_on_a_port_in_use_exits_1_with_a_clear_message(tmp_path: Path, busy_port: int) -> None:
    out = mlchaos("run", "--config", str(write_policy(tmp_path, VALID)), "--listen", f"127.0.0.1:{busy_port}")
    assert out.returncode == 1
    assert f"mlchaos: cannot listen on 127.0.0.1:{busy_port}: " in out.stderr
    assert "in use" in out.stderr.lower()


def test_run_with_the_admin_port_in_use_exits_1_with_a_clear_message(tmp_path: Path, busy_port: int) -> None:
    out = mlchaos("run", "--config", str(write_policy(tmp_path, VALID)),
                  "--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{busy_port}")
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{busy_port} for the admin API" in out.stderr


def test_run_refuses_an_admin_api_off_loopback_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLCHAOS_ADMIN_TOKEN"}
    out = mlchaos("run", "--config", str(write_policy(tmp_path, VALID)), "--admin", "0.0.0.0:0", env=env)
    assert out.returncode == 1
    assert "refusing to serve the admin API on 0.0.0.0:0 without a token" in out.stderr


# Three 2 MiB blocks written and freed, 20 times: the minor page faults of the last 20 rounds.
_REFAULTS = """
import resource, sys
from proxy.cli import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def blocks():
    held = [b"x" * (2 << 20) for _ in range(3)]
    del held
blocks()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blocks()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _refaults(mode: str, env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", _REFAULTS, mode], capture_output=True, text=True, timeout=30,
                         cwd=ROOT, env=env, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's parameters are glibc's")
def test_the_sidecar_reuses_freed_megabytes_instead_of_faulting_them_in_again() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    default = _refaults("default", env)
    if default < 20 * 512:  # Debian 12's glibc trims the heap's top after each round: each is faulted in again
        pytest.skip(f"this glibc keeps freed blocks by itself ({default} page faults in 20 rounds)")
    kept = _refaults("keep", env)
    assert kept * 20 < default, (default, kept)


def test_an_operator_s_malloc_settings_are_left_to_act(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("MALLOC_ARENA_MAX", "2"), ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")):
        with monkeypatch.context() as m:
            for k in [k for k in os.environ if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"]:
                m.delenv(k)
            m.setenv(name, value)
            assert keep_freed_memory() is False
