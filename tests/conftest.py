"""Shared fixtures: a real upstream on loopback and a real sidecar in front of it."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml
from aiohttp import web
from hypothesis import settings

from proxy.app import Sidecar
from proxy.policy import compile_policy

settings.register_profile("fast", max_examples=50, deadline=None)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Test the data plane that ships: never a compiled build older than the sources beside it, and, under
    MLCHAOS_REQUIRE_COMPILED=1 (make test), the compiled one."""
    from proxy.dataplane import build

    built = build()
    if built == "stale":
        raise pytest.UsageError("the compiled data plane is older than its sources: run `make venv` "
                                "(or MLCHAOS_PURE_PYTHON=1 pip install -e . for plain Python)")
    if os.environ.get("MLCHAOS_REQUIRE_COMPILED") == "1" and built != "compiled":
        raise pytest.UsageError(f"MLCHAOS_REQUIRE_COMPILED=1 but the data plane is {built}: see setup.py")


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def echo(request: web.Request) -> web.Response:
    """Answers with what the upstream saw: method, path, headers and body length."""
    body = await request.read()
    return web.json_response({
        "method": request.method, "path": request.path_qs, "headers": dict(request.headers),
        "body_len": len(body), "body": body.decode("latin-1"), "version": f"{request.version[0]}.{request.version[1]}",
    })


class Upstream:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner, self.port = runner, port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def start_upstream() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    """Start aiohttp upstreams on free loopback ports: ``await start_upstream({"/path": handler})``.

    Any path not in the table is answered by ``echo``.
    """
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler] | None = None) -> Upstream:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        for path, handler in (routes or {}).items():
            app.router.add_route("*", path, handler)
        app.router.add_route("*", "/{tail:.*}", echo)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return Upstream(runner, runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def upstream(start_upstream: Callable[..., Awaitable[Upstream]]) -> Upstream:
    return await start_upstream()


def policy_from(upstream_url: str, extra: dict[str, Any] | str | None = None, **top: Any) -> Any:
    """A compiled policy on free ports in front of ``upstream_url``; ``extra`` is YAML text or a mapping."""
    raw: dict[str, Any] = {"listen": "127.0.0.1:0", "upstream": upstream_url, "admin": {"listen": "127.0.0.1:0"}}
    if isinstance(extra, str):
        raw.update(yaml.safe_load(extra) or {})
    elif extra:
        raw.update(extra)
    raw.update(top)
    return compile_policy(raw, source=yaml.safe_dump(raw))


@pytest.fixture
async def start_sidecar() -> AsyncIterator[Callable[..., Awaitable[Sidecar]]]:
    """Start sidecars: ``await start_sidecar(policy, env={...})``; each is stopped after the test."""
    started: list[Sidecar] = []

    async def start(policy: Any, **kwargs: Any) -> Sidecar:
        kwargs.setdefault("env", {})
        sidecar = Sidecar(policy, **kwargs)
        await sidecar.start()
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        await sidecar.stop(drain=0.5)
