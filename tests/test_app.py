"""Policy reloads (file change, ConfigMap swap, SIGHUP) and the SIGTERM drain of a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from proxy.app import compile_with_overrides
from proxy.policy import load_policy_text
from tests.conftest import free_port

MLCHAOS = str(Path(sys.executable).with_name("mlchaos"))


def policy_yaml(upstream_url: str, names: list[str], **top: Any) -> str:
    return yaml.safe_dump({
        "listen": "127.0.0.1:0", "upstream": upstream_url, "admin": {"listen": "127.0.0.1:0"},
        "experiments": [{"name": n, "chaos": 1} for n in names], **top}, sort_keys=False)


async def experiment_names(admin_port: int) -> set[str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{admin_port}/experiments") as r:
        return {e["name"] for e in (await r.json())["experiments"]}


async def _has(admin_port: int, names: set[str]) -> bool:
    return await experiment_names(admin_port) == names


async def wait_for(check: Callable[[], Coroutine[Any, Any, bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


# -- reloads of an in-process sidecar ------------------------------------------------------------------------

async def test_a_rewritten_policy_file_is_live_within_seconds(upstream, start_sidecar, tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(upstream.url, ["first"]))
    sc = await start_sidecar(load_policy_text(path.read_text()), policy_path=str(path))
    assert await experiment_names(sc.admin_port) == {"first"}
    path.write_text(policy_yaml(upstream.url, ["first", "second"], max_blast_radius=2))
    t0 = time.monotonic()
    assert await wait_for(lambda: _has(sc.admin_port, {"first", "second"}), 2.5)
    assert time.monotonic() - t0 <= 2.5
    assert sc.metrics.registry.get_sample_value("mlchaos_policy_reloads_total", {"result": "ok"}) == 1


async def test_an_invalid_rewrite_keeps_the_running_policy(upstream, start_sidecar, tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(upstream.url, ["keeper"]))
    sc = await start_sidecar(load_policy_text(path.read_text()), policy_path=str(path))
    path.write_text(policy_yaml(upstream.url, ["keeper", "broken"]).replace("chaos: 1", "chaos: -3", 1))
    registry = sc.metrics.registry

    async def refused() -> bool:
        return registry.get_sample_value("mlchaos_policy_reloads_total", {"result": "invalid"}) == 1

    assert await wait_for(refused, 2.5)
    assert await experiment_names(sc.admin_port) == {"keeper"}
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.proxy_port}/still") as r:
        assert r.status == 200
    # A later valid rewrite still goes through.
    path.write_text(policy_yaml(upstream.url, ["keeper", "fixed"], max_blast_radius=2))
    assert await wait_for(lambda: _has(sc.admin_port, {"keeper", "fixed"}), 2.5)
    assert registry.get_sample_value("mlchaos_policy_reloads_total", {"result": "invalid"}) == 1


def _configmap_version(root: Path, stamp: str, text: str) -> None:
    """Publish a ConfigMap revision the way the kubelet does: a new timestamped dir, then swap ``..data``."""
    version = root / f"..{stamp}"
    version.mkdir()
    (version / "policy.yaml").write_text(text)
    tmp = root / "..data_tmp"
    os.symlink(version.name, tmp)
    os.replace(tmp, root / "..data")


async def test_a_configmap_symlink_swap_is_picked_up(upstream, start_sidecar, tmp_path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    first = policy_yaml(upstream.url, ["v1"])
    _configmap_version(root, "2030_01_07_10_00_00.000000001", first)
    os.symlink("..data/policy.yaml", root / "policy.yaml")
    sc = await start_sidecar(load_policy_text(first), policy_path=str(root / "policy.yaml"))
    assert await experiment_names(sc.admin_port) == {"v1"}
    # Same size as the first revision: only the inode behind the link changes.
    second = first.replace("name: v1", "name: v2")
    assert len(second) == len(first)
    _configmap_version(root, "2030_01_07_10_05_00.000000002", second)
    assert await wait_for(lambda: _has(sc.admin_port, {"v2"}), 2.5)


async def test_command_line_overrides_survive_a_reload(start_upstream, start_sidecar, tmp_path) -> None:
    async def marked(request: web.Request) -> web.Response:
        return web.Response(text="override")

    real = await start_upstream({"/who": marked})
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml("http://127.0.0.1:9", ["one"]))
    overrides: dict[str, object] = {"upstream": real.url, "listen": "127.0.0.1:0", "admin.listen": "127.0.0.1:0"}
    sc = await start_sidecar(compile_with_overrides(path.read_text(), overrides), policy_path=str(path),
                             overrides=overrides)
    path.write_text(policy_yaml("http://127.0.0.1:9", ["one", "two"], max_blast_radius=2))
    assert await wait_for(lambda: _has(sc.admin_port, {"one", "two"}), 2.5)
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.proxy_port}/who") as r:
        assert (r.status, await r.text()) == (200, "override")


# -- a real process --------------------------------------------------------------------------------------------

class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, proxy_port: int, admin_port: int) -> None:
        self.proc, self.proxy_port, self.admin_port = proc, proxy_port, admin_port
        self.stderr = b""

    async def ready(self, timeout: float = 6.0) -> None:
        async def up() -> bool:
            if self.proc.returncode is not None:
                raise AssertionError(f"mlchaos exited with {self.proc.returncode}")
            try:
                async with aiohttp.ClientSession() as s, \
                        s.get(f"http://127.0.0.1:{self.admin_port}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientConnectionError:
                return False

        assert await wait_for(up, timeout), "mlchaos did not become ready"

    async def finish(self, timeout: float) -> tuple[int, list[dict[str, Any]]]:
        """Wait for the exit; the return code and the stderr lines, each parsed as JSON."""
        assert self.proc.stderr is not None
        self.stderr = await asyncio.wait_for(self.proc.stderr.read(), timeout)
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        lines = [ln for ln in self.stderr.decode().splitlines() if ln.strip()]
        return rc, [json.loads(ln) for ln in lines]


@pytest.fixture
async def run_mlchaos() -> AsyncIterator[Callable[..., Coroutine[Any, Any, Proc]]]:
    started: list[Proc] = []

    async def run(config: Path, *extra: str) -> Proc:
        proxy_port, admin_port = free_port(), free_port()
        proc = await asyncio.create_subprocess_exec(
            MLCHAOS, "run", "--config", str(config), "--listen", f"127.0.0.1:{proxy_port}",
            "--admin", f"127.0.0.1:{admin_port}", *extra,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        p = Proc(proc, proxy_port, admin_port)
        started.append(p)
        await p.ready()
        return p

    yield run
    for p in started:
        if p.proc.returncode is None:
            p.proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.proc.communicate(), 5)


async def test_sighup_reloads_the_file_and_keeps_command_line_overrides(upstream, run_mlchaos, tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    # Addresses in the file are overridden on the command line; this upstream would refuse connections.
    path.write_text(policy_yaml("http://127.0.0.1:9", ["before"], listen="127.0.0.1:1",
                                admin={"listen": "127.0.0.1:2"}))
    p = await run_mlchaos(path, "--upstream", upstream.url)
    path.write_text(policy_yaml("http://127.0.0.1:9", ["before", "after-hup"], max_blast_radius=2,
                                listen="127.0.0.1:1", admin={"listen": "127.0.0.1:2"}))
    p.proc.send_signal(signal.SIGHUP)
    assert await wait_for(lambda: _has(p.admin_port, {"before", "after-hup"}), 3)
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{p.proxy_port}/x") as r:
        assert r.status == 200 and (await r.json())["path"] == "/x"
    p.proc.send_signal(signal.SIGTERM)
    rc, lines = await p.finish(5)
    assert rc == 0, p.stderr
    events = [ln["event"] for ln in lines]
    assert {"start", "reload", "stopping", "stopped"} <= set(events), events
    assert events[0] == "start" and events[-1] == "stopped"
    reloads = [ln for ln in lines if ln["event"] == "reload"]
    assert any(ln["origin"] == "SIGHUP" for ln in reloads), reloads
    # Overrides were applied to the reload too: nothing claims listen or admin.listen changed.
    assert not [ln for ln in reloads if ln.get("warnings")], reloads
    assert all({"ts", "level", "event"} <= set(ln) for ln in lines)


async def test_sigterm_lets_requests_in_flight_finish_then_exits_zero(start_upstream, run_mlchaos, tmp_path) -> None:
    arrived = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        await asyncio.sleep(1.0)
        return web.Response(text="done")

    up = await start_upstream({"/slow": slow})
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(up.url, [], timeouts={"drain": "5s"}))
    p = await run_mlchaos(path)

    async def fetch(session: aiohttp.ClientSession) -> tuple[int, str]:
        async with session.get(f"http://127.0.0.1:{p.proxy_port}/slow") as r:
            return r.status, await r.text()

    async with aiohttp.ClientSession() as s:
        inflight = asyncio.gather(*(fetch(s) for _ in range(3)))

        async def all_arrived() -> bool:
            return arrived == 3

        assert await wait_for(all_arrived, 2)
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        async with aiohttp.ClientSession() as admin_s:
            await asyncio.sleep(0.2)
            async with admin_s.get(f"http://127.0.0.1:{p.admin_port}/readyz") as r:
                assert r.status == 503 and (await r.json())["status"] == "draining"
        results = await asyncio.wait_for(inflight, 4)
    assert results == [(200, "done")] * 3
    rc, lines = await p.finish(5)
    assert rc == 0, p.stderr
    assert time.monotonic() - t0 < 5.0
    events = {ln["event"]: ln for ln in lines}
    assert {"start", "stopping", "drained", "stopped"} <= set(events), list(events)
    assert events["drained"]["unfinished"] == 0
    assert events["stopping"]["drain_seconds"] == 5.0
