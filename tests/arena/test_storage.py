"""Migrations and episode documents on SQLite and PostgreSQL; rate limits in memory and Redis."""

import socket
import time
import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, column, insert, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import undefer

from vlarena.arena.ratelimit import RateLimiter
from vlarena.arena.storage.database import alembic_config, make_engine, migrate, session_factory
from vlarena.arena.storage.tables import (
    Base,
    BattleRow,
    Document,
    EpisodeRow,
    SessionRow,
    TurnRow,
    utcnow,
)
from vlarena.errors import RateLimitedError
from vlarena.execution.schemas import ExecuteResponse, Metadata, State, TaskOut, Timing

TABLES = {"sessions", "battles", "turns", "episodes", "votes", "alembic_version"}


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def _downgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


async def test_migrations_build_the_schema_of_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent: every start runs it
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert tables == TABLES
            assert await connection.run_sync(_diff) == []  # the models match the migrations
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert tables == {"alembic_version"}
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("storage", ["async+memory://", "async+redis://127.0.0.1:6379"])
async def test_rate_limits_count_per_key(storage: str) -> None:
    key = uuid.uuid4().hex
    first = RateLimiter(storage, {"vote": "2/minute"})
    await first.hit("vote", key)
    await first.hit("vote", key, "another-" + key)
    with pytest.raises(RateLimitedError) as caught:
        await first.hit("vote", key)
    assert 1 <= caught.value.retry_after_s <= 60
    if storage.startswith("async+redis"):  # a second worker process shares the count
        with pytest.raises(RateLimitedError):
            await RateLimiter(storage, {"vote": "2/minute"}).hit("vote", key)


def _response(steps: int = 2) -> ExecuteResponse:
    state = State(qpos=[0.1] * 9, qvel=[0.0] * 9, time=0.1, inference_ms=5.0, scene_qpos=[0.2] * 16)
    return ExecuteResponse(
        actions=[[0.0] * 8] * steps,
        states=[state] * steps,
        duration_ms=900.0,
        metadata=Metadata(num_steps=steps, max_steps=60, early_termination=False),
        success=True,
        seed=1,
        model_id="m",
        robot_id="franka",
        scene_id="table",
        instruction="touch the red cube",
        task=TaskOut(kind="touch", color="red", other=None, side=None),
        timing=Timing(inference_ms=200.0, simulation_ms=700.0),
        mujoco_version="3",
        initial_qpos=[0.0] * 16,
    )


EPISODE = {"turn_id": "t", "model_id": "m", "success": True, "duration_ms": 1.0}


async def _store_untyped(connection: AsyncConnection, written: ExecuteResponse) -> None:
    """A session, battle and turn, and side a's episode "e1" of that turn written through an
    untyped JSON column, as rows were before the column's typing or before a migration."""
    untyped = table(
        "episodes",
        *(column(name) for name in ("id", "side", "num_steps", *EPISODE)),
        column("data", Document),
        column("created_at"),
    )
    await connection.execute(insert(SessionRow).values(id="s", token_sha256="0", ip="-"))
    await connection.execute(
        insert(BattleRow).values(id="b", session_id="s", scene_id="table", model_a="m", model_b="n")
    )
    await connection.execute(
        insert(TurnRow).values(
            id="t", battle_id="b", number=1, instruction="x", seed=1, max_steps=60, status="done"
        )
    )
    await connection.execute(
        insert(untyped).values(
            id="e1",
            side="a",
            num_steps=len(written.states),
            data=written.model_dump(mode="json"),
            created_at=utcnow(),
            **EPISODE,
        )
    )


async def test_episodes_are_stored_and_read_back_as_execute_responses(database_url: str) -> None:
    engine = make_engine(database_url)
    written = _response()
    try:
        await migrate(engine)
        async with engine.begin() as connection:
            await _store_untyped(connection, written)
        db = session_factory(engine)
        async with db.begin() as s:
            s.add(EpisodeRow(id="e2", side="b", data=written, num_steps=2, **EPISODE))
        async with db() as s:
            query = select(EpisodeRow).options(undefer(EpisodeRow.data)).order_by(EpisodeRow.side)
            episodes = (await s.scalars(query)).all()
        assert [e.data for e in episodes] == [written, written]
        assert episodes[0].data.states[1].scene_qpos == [0.2] * 16
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def test_episodes_stored_before_get_their_task_kind_and_latency(database_url: str) -> None:
    engine = make_engine(database_url)
    written = _response(3).model_copy(
        update={
            "states": [
                _response().states[0].model_copy(update={"inference_ms": ms})
                for ms in (0.0, 4.0, 8.0, 0.0, 30.0)
            ]
        }
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, "0001")  # the schema before task kinds
            await _store_untyped(connection, written)
        await migrate(engine)
        async with session_factory(engine)() as s:
            episode = await s.get(EpisodeRow, "e1")
        assert episode is not None
        assert (episode.task_kind, episode.inference_ms) == ("touch", 8.0)  # median of 4, 8, 30
    finally:
        await engine.dispose()


async def test_a_silent_shared_rate_limit_store_falls_back_in_process() -> None:
    """A Redis that accepts connections but never answers: limits go on, in memory, within
    about a second (the next requests do not wait for it at all)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"async+redis://127.0.0.1:{silent.getsockname()[1]}"
        limiter = RateLimiter(url, {"vote": "2/minute"})
        started = time.monotonic()
        await limiter.hit("vote", "k")
        await limiter.hit("vote", "k")
        with pytest.raises(RateLimitedError):
            await limiter.hit("vote", "k")
        assert time.monotonic() - started < 3
