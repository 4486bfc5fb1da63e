"""A real execution service and a real arena on loopback, on SQLite and on PostgreSQL."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.loopback import RunningServer, serve_in_thread
from vlarena.arena.app import create_app as create_arena
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage.database import make_engine
from vlarena.arena.storage.tables import BattleRow
from vlarena.execution.app import create_app as create_execution
from vlarena.execution.settings import ExecutionSettings
from vlarena.testing import ServiceProcess, scratch_postgres

T = TypeVar("T")
MODELS = ("scripted-expert", "vla-flow-tiny-random", "vla-ar-tiny-random")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'arena.db'}"
        return
    with scratch_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def execution() -> Iterator[RunningServer]:
    """The execution service with the scripted expert and two random-weight tiny natives, running
    whole chunks (a call per 8 steps: these tests are about the arena; tests/execution covers the
    default of a call per step, ensembled)."""
    settings = ExecutionSettings(
        port=0,
        presets="vla-flow:tiny,vla-ar:tiny",
        shipped_models=False,
        max_waiting_episodes=8,
        horizon=8,
        ensemble=False,
    )
    server = serve_in_thread(create_execution(settings))
    yield server
    server.stop()


def arena_settings(database_url: str, server_url: str, **overrides: Any) -> ArenaSettings:
    values: dict[str, Any] = {
        "port": 0,
        "database_url": database_url,
        "server_url": server_url,
        "seed": 0,
        "max_steps": 30,
        "bootstrap_rounds": 50,
        "leaderboard_ttl_s": 0,
        "battle_rate": "1000/minute",
        "turn_rate": "1000/minute",
        "vote_rate": "1000/minute",
        "session_rate": "1000/minute",
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
    }
    return ArenaSettings(**(values | overrides))


class StartArena:
    """Factory: an arena (uvicorn on loopback) on the test's database; returns its client."""

    def __init__(self, database_url: str, execution_url: str) -> None:
        self.database_url = database_url
        self.execution_url = execution_url
        self.running: dict[int, tuple[RunningServer, httpx.Client]] = {}

    def __call__(self, server_url: str | None = None, **overrides: Any) -> httpx.Client:
        settings = arena_settings(self.database_url, server_url or self.execution_url, **overrides)
        server = serve_in_thread(create_arena(settings))
        client = httpx.Client(base_url=server.url, timeout=60)
        self.running[id(client)] = (server, client)
        return client

    def stop(self, client: httpx.Client) -> None:
        server, _ = self.running.pop(id(client))
        client.close()
        server.stop()

    def stop_all(self) -> None:
        for _, client in list(self.running.values()):
            self.stop(client)


@pytest.fixture
def start_arena(database_url: str, execution: RunningServer) -> Iterator[StartArena]:
    factory = StartArena(database_url, execution.url)
    yield factory
    factory.stop_all()


def login(client: httpx.Client) -> dict[str, str]:
    """A new session's Authorization header."""
    reply = client.post("/api/sessions")
    assert reply.status_code == 201, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def wait_turns(client: httpx.Client, battle_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """Poll a battle until no turn is queued or running."""
    deadline = time.monotonic() + timeout_s
    while True:
        battle: dict[str, Any] = client.get(f"/api/battles/{battle_id}").json()
        if battle["status"] not in ("queued", "running"):
            return battle
        if time.monotonic() > deadline:
            raise TimeoutError(f"battle {battle_id} still {battle['status']}")
        time.sleep(0.05)


def execution_process(port: int, **env: str) -> ServiceProcess:
    """`vlarena execute` on `port`, without the shipped checkpoints."""
    return ServiceProcess(
        "execute", port, "/health", VLA_EXEC_PORT=str(port), VLA_EXEC_SHIPPED_MODELS="false", **env
    )


def in_database(database_url: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` on a connection of its own, straight to the database (one transaction)."""

    async def run() -> T:
        engine = make_engine(database_url)
        try:
            async with engine.begin() as connection:
                return await work(connection)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def battle_pairs(database_url: str) -> list[tuple[str, str]]:
    """(model_a, model_b) of every battle."""

    async def pairs(connection: AsyncConnection) -> list[tuple[str, str]]:
        rows = await connection.execute(select(BattleRow.model_a, BattleRow.model_b))
        return [(a, b) for a, b in rows]

    return in_database(database_url, pairs)
