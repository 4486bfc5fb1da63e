"""What both HTTP apps share, in-process (ASGI): security headers on every answer, and
forwarded headers believed from trusted proxies only."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from vlarena.arena.app import create_app as create_arena
from vlarena.arena.settings import ArenaSettings
from vlarena.execution.app import create_app as create_execution
from vlarena.execution.settings import ExecutionSettings
from vlarena.httpjson import SECURITY_HEADERS, install_error_handlers, install_middleware

PEER = "127.0.0.1"  # the TCP peer every request comes from here (a proxy, or a client)
FORGED = {"X-Forwarded-For": "10.66.0.1"}


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app, started (lifespan), behind an in-process transport from PEER."""
    transport = httpx.ASGITransport(app, client=(PEER, 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://arena") as client,
    ):
        yield client


def arena(tmp_path: Path, **overrides: Any) -> FastAPI:
    values: dict[str, Any] = {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'arena.db'}"}
    return create_arena(ArenaSettings(**(values | overrides)))


def execution(**overrides: Any) -> FastAPI:
    values: dict[str, Any] = {"presets": "", "shipped_models": False}
    return create_execution(ExecutionSettings(**(values | overrides)))


async def test_a_forged_forwarded_for_does_not_change_the_rate_limit_key(tmp_path: Path) -> None:
    async with asgi_client(arena(tmp_path, session_rate="1/minute")) as client:
        assert (await client.post("/api/sessions")).status_code == 201
        for headers in ({}, FORGED, {"X-Forwarded-For": "10.66.0.2, 10.66.0.3"}):
            reply = await client.post("/api/sessions", headers=headers)
            assert reply.status_code == 429, (headers, reply.text)  # still PEER's spent limit


async def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    app = arena(tmp_path, session_rate="1/minute", trusted_proxies="127.0.0.0/8")
    async with asgi_client(app) as client:
        assert (await client.post("/api/sessions")).status_code == 201
        assert (await client.post("/api/sessions")).status_code == 429
        assert (await client.post("/api/sessions", headers=FORGED)).status_code == 201
        assert (await client.post("/api/sessions", headers=FORGED)).status_code == 429


@pytest.mark.parametrize("settings", [ArenaSettings, ExecutionSettings])
def test_trusted_proxies_are_ips_or_cidrs(settings: Callable[..., Any]) -> None:
    assert settings(trusted_proxies=" 10.0.0.0/8, ::1 ").trusted_proxies == "10.0.0.0/8,::1/128"
    assert settings().trusted_proxies == ""
    with pytest.raises(ValidationError, match="IPs or CIDRs"):
        settings(trusted_proxies="10.0.0.0/8,proxy.local")


async def test_every_answer_carries_the_security_headers(tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>VLArena</title>")
    async with asgi_client(arena(tmp_path, web_dir=web)) as client:
        replies = [
            await client.get("/"),
            await client.head("/"),  # load balancers' health probes
            await client.get("/api/health"),
            await client.post("/api/battles", json={}),  # 401
            await client.get("/api/nowhere"),  # 404
        ]
    async with asgi_client(execution()) as client:
        replies += [await client.get("/health"), await client.post("/execute", json={})]
    assert replies[1].status_code == 200
    for reply in replies:
        for name, value in SECURITY_HEADERS.items():
            assert reply.headers[name] == value, (reply.request.url, name)
        assert "server" not in reply.headers
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "'wasm-unsafe-eval'" in policy
    assert "'unsafe-inline'" not in policy  # no inline script: the UI's own files only


async def test_an_unexpected_error_carries_the_security_headers_too() -> None:
    app = FastAPI()
    install_error_handlers(app)
    install_middleware(app, 1024, "")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        reply = await client.get("/boom")
    assert reply.status_code == 500
    assert reply.json() == {"error": "internal_error", "detail": "see the server log"}
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers[name] == value


async def test_http_errors_keep_their_headers() -> None:
    async with asgi_client(execution()) as client:
        reply = await client.get("/execute")
    assert reply.status_code == 405
    assert reply.json()["error"] == "method_not_allowed"
    assert reply.headers["allow"] == "POST"
