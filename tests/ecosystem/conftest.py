"""Shared helpers of the ecosystem tests: paths, the tools installed beside this interpreter, subprocesses."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.demo.model import start_model

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str) -> Path | None:
    """An executable installed beside this interpreter (the virtualenv's bin), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return here
    found = shutil.which(name)
    return Path(found) if found else None


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything that could steer a tool elsewhere (proxies, Locust and
    mlchaos settings), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOCUST_", "MLCHAOS_")) and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


class Process:
    """A subprocess started in its own session, so that it and its children can be ended by its id."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def wait(self, timeout: float) -> Finished:
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.kill()
            out, err = await self.proc.communicate()
            raise AssertionError(f"still running after {timeout} s; stderr:\n{err.decode(errors='replace')[-4000:]}"
                                 ) from None
        assert self.proc.returncode is not None
        return Finished(self.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def spawn(args: list[str], env: Mapping[str, str], cwd: Path = ROOT) -> Process:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=str(cwd), env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    return Process(proc)


@pytest.fixture
async def processes() -> AsyncIterator[list[Process]]:
    """Subprocesses a test started; any still running at its end are killed."""
    started: list[Process] = []
    yield started
    for p in started:
        p.kill()
        if p.proc.returncode is None:
            await p.proc.wait()


@pytest.fixture
async def demo_model() -> AsyncIterator[str]:
    """The embedded demo iris model (KServe V1 and V2) on a free loopback port; yields its URL."""
    runner, port = await start_model("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
