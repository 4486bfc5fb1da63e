"""The arena's side of the turn queue: a result is stored once, a worker's error stays
anonymous, and a turn the broker lost is queued again (real Redis, SQLite)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.arena.conftest import arena_settings
from tests.arena.test_storage import _response
from vlarena.arena.storage import crud
from vlarena.arena.storage.database import make_engine, migrate, session_factory
from vlarena.arena.storage.tables import EpisodeRow, TurnRow
from vlarena.arena.usecases.brokered import BrokeredRunner
from vlarena.broker import QueueSettings, TurnJob, TurnResult
from vlarena.execution.schemas import ExecuteRequest
from vlarena.httpjson import ErrorBody

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def runner(tmp_path: Path) -> AsyncIterator[BrokeredRunner]:
    settings = arena_settings(f"sqlite+aiosqlite:///{tmp_path / 'arena.db'}", "http://x")
    engine = make_engine(settings.database_url)
    await migrate(engine)
    queue = QueueSettings(url=REDIS, prefix=f"test-{uuid.uuid4().hex[:8]}", sweep_s=0.01)
    built = BrokeredRunner(settings, queue, session_factory(engine))
    await built.streams.ensure_groups()
    yield built
    streams = built.streams
    await streams.redis.delete(streams.turns, streams.results, streams.live, streams.progress)
    await built.close()
    await engine.dispose()


def _requests() -> tuple[ExecuteRequest, ExecuteRequest]:
    request = ExecuteRequest(
        model_id="vla-a", robot_id="franka", scene_id="table", instruction="touch the red cube"
    )
    return request, request.model_copy(update={"model_id": "vla-b"})


async def add_turns(runner: BrokeredRunner, count: int) -> list[str]:
    async with runner.db.begin() as s:
        session = crud.add_session(s, uuid.uuid4().hex, "127.0.0.1")
        await s.flush()  # the battles' foreign key needs the session's row first
        battles = [crud.add_battle(s, session, "table", "vla-a", "vla-b") for _ in range(count)]
        turns = [crud.add_turn(b, "touch the red cube", 1, 60, None) for b in battles]
    return [t.id for t in turns]


async def test_a_result_is_stored_once_and_errors_stay_anonymous(runner: BrokeredRunner) -> None:
    done, failed = await add_turns(runner, 2)
    result = TurnResult(turn_id=done, worker="w1", episodes=(_response(), _response()))
    await runner._store(result)
    await runner._store(result.model_copy(update={"worker": "w2"}))  # a retried turn's twin
    error = ErrorBody(error="execution_failed", detail="vla-a: it needs cameras ['top']")
    await runner._store(TurnResult(turn_id=failed, worker="w1", error=error))
    await runner._store(TurnResult(turn_id="no-such-turn", worker="w1", error=error))
    async with runner.db() as s:
        episodes = await s.scalar(select(func.count()).select_from(EpisodeRow))
        rows = {t.id: t for t in (await s.scalars(select(TurnRow))).unique().all()}
    assert episodes == 2
    assert rows[done].status == "done"
    assert rows[failed].status == "failed"
    assert rows[failed].error is not None
    assert "vla-a" not in str(rows[failed].error)
    assert "cameras" not in str(rows[failed].error)


async def test_active_turns_the_broker_lost_are_queued_again(runner: BrokeredRunner) -> None:
    lost, held = await add_turns(runner, 2)
    await runner.streams.redis.hset(runner.streams.live, held, "arena")  # type: ignore[misc]
    await asyncio.sleep(0.05)  # both older than the sweep's grace
    await runner._sweep()
    snapshot = await runner.streams.snapshot(10)
    assert list(snapshot.positions) == [lost]
    assert await runner.streams.known([lost, held]) == {lost, held}


async def test_an_unreadable_result_fails_its_turn(runner: BrokeredRunner) -> None:
    (turn,) = await add_turns(runner, 1)
    streams = runner.streams
    await streams.enqueue(TurnJob(turn_id=turn, requests=_requests()))
    await streams.redis.xadd(streams.results, {"turn": turn, "result": "{truncated"})
    await runner._collect()
    async with runner.db() as s:
        row = await s.get(TurnRow, turn)
    assert row is not None
    assert row.status == "failed"
    assert await streams.known([turn]) == set()  # settled: nothing left to sweep or wait for
    assert await streams.redis.xlen(streams.results) == 0
