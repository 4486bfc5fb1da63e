"""Fuzzing the arena from its OpenAPI schema (schemathesis, in-process over ASGI), on SQLite,
against a real execution service (expert and tiny models) on loopback.

Calls carry a real session's token, so the bodies and ids schemathesis draws reach the use
cases rather than stopping at authentication. Turns need a battle id that exists, which random
ids almost never are: few episodes run. Schema-valid bodies the settings refuse (a scene not
configured, an instruction over VLA_ARENA_MAX_INSTRUCTION_CHARS) are 422: see tests/fuzzing.py.
"""

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from starlette.types import Receive, Scope, Send

from tests.arena.conftest import arena_settings
from tests.fuzzing import CHECKS, EXCLUDED
from tests.loopback import serve_in_thread
from vlarena.arena.app import create_app as create_arena
from vlarena.arena.storage.database import make_engine, migrate
from vlarena.execution.app import create_app as create_execution
from vlarena.execution.settings import ExecutionSettings
from vlarena.testing import free_port

EXAMPLES = 50  # per operation


class WithoutLifespan:
    """The app with its lifespan answered but not run: schemathesis stops lifespans after each
    test, and the arena's clients do not start again once closed (the database is migrated
    here instead)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    await migrate(engine)
    await engine.dispose()


EXECUTION_PORT = free_port()
DATABASE = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp(prefix='vlarena-fuzz-')) / 'arena.db'}"
asyncio.run(_migrate(DATABASE))
app = create_arena(arena_settings(DATABASE, f"http://127.0.0.1:{EXECUTION_PORT}", retry_attempts=1))
schema = schemathesis.openapi.from_asgi("/openapi.json", WithoutLifespan(app))


@pytest.fixture(scope="module")
def auth() -> Iterator[dict[str, str]]:
    """A session's Authorization header, with the execution service up behind the arena."""
    settings = ExecutionSettings(  # whole chunks: the fuzzing is about the arena's API
        presets="vla-flow:tiny,vla-ar:tiny", shipped_models=False, horizon=8, ensemble=False
    )
    execution = serve_in_thread(create_execution(settings), port=EXECUTION_PORT)
    transport = httpx.ASGITransport(app)

    async def login() -> str:
        async with httpx.AsyncClient(transport=transport, base_url="http://arena") as client:
            return str((await client.post("/api/sessions")).json()["token"])

    yield {"Authorization": f"Bearer {asyncio.run(login())}"}
    execution.stop()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_arena_api_holds_its_schema(case: schemathesis.Case[Any], auth: dict[str, str]) -> None:
    case.call_and_validate(headers=auth, additional_checks=CHECKS, excluded_checks=EXCLUDED)
