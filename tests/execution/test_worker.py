"""The execution service as a queue worker (real Redis, real episodes of the scripted expert):
it runs a leased turn and publishes both episodes, and fails a turn leased too often."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from vlarena.broker import QueueSettings, TurnJob, TurnResult, TurnStreams
from vlarena.errors import ConfigError
from vlarena.execution.catalog import EXPERT, ModelCatalog
from vlarena.execution.episodes import EpisodeService
from vlarena.execution.schemas import ExecuteRequest
from vlarena.execution.settings import ExecutionSettings
from vlarena.execution.worker import TurnWorker

REDIS = "redis://127.0.0.1:6379/0"


def job(turn_id: str) -> TurnJob:
    request = ExecuteRequest(
        model_id=EXPERT,
        robot_id="franka",
        scene_id="table",
        instruction="touch the red cube",
        seed=3,
        max_steps=5,
    )
    return TurnJob(turn_id=turn_id, requests=(request, request))


@pytest.fixture
async def queue() -> AsyncIterator[QueueSettings]:
    settings = QueueSettings(
        url=REDIS, prefix=f"test-{uuid.uuid4().hex[:8]}", lease_s=0.3, max_attempts=1
    )
    yield settings
    streams = TurnStreams(settings, "cleaner")
    await streams.redis.delete(streams.turns, streams.results, streams.live, streams.progress)
    await streams.aclose()


@pytest.fixture
async def worker(queue: QueueSettings) -> AsyncIterator[TurnWorker]:
    settings = ExecutionSettings(presets="", shipped_models=False)
    service = EpisodeService(settings, ModelCatalog(settings))
    built = TurnWorker(queue, service)
    yield built
    await built.streams.aclose()
    service.close()


async def results(arena: TurnStreams) -> list[TurnResult]:
    for _ in range(50):
        if found := [d.result for d in await arena.next_results() if d.result is not None]:
            return found
        await asyncio.sleep(0.1)
    raise TimeoutError("no result")


async def test_a_leased_turn_runs_here_and_its_episodes_are_published(
    queue: QueueSettings, worker: TurnWorker
) -> None:
    arena = TurnStreams(queue, "arena")
    await arena.ensure_groups()
    await arena.enqueue(job("t1"))
    leasing = asyncio.get_running_loop().create_task(worker.run())
    try:
        (result,) = await results(arena)
    finally:
        worker.stop()
        await asyncio.wait_for(leasing, 10)
    assert (result.turn_id, result.worker, result.error) == ("t1", worker.name, None)
    assert result.episodes is not None
    assert [e.metadata.num_steps for e in result.episodes] == [5, 5]
    assert result.episodes[0].states == result.episodes[1].states  # same seed, same expert
    assert await arena.redis.xlen(arena.turns) == 0  # done and acknowledged
    await arena.aclose()


async def test_a_turn_leased_too_often_is_failed(queue: QueueSettings, worker: TurnWorker) -> None:
    arena, ghost = TurnStreams(queue, "arena"), TurnStreams(queue, "ghost")
    await arena.ensure_groups()
    await arena.enqueue(job("t1"))
    assert await ghost.lease() is not None  # a worker that dies holding it
    await asyncio.sleep(queue.lease_s + 0.1)
    leased = await worker.streams.lease()
    assert leased is not None
    assert leased.attempts == 2
    await worker._turn(leased)
    (result,) = await results(arena)
    assert result.error is not None
    assert (result.error.error, result.error.detail) == (
        "execution_failed",
        "no result after 1 lease of the turn",
    )
    for streams in (arena, ghost):
        await streams.aclose()


async def test_a_stopping_worker_hands_its_turn_back_at_no_cost(queue: QueueSettings) -> None:
    settings = ExecutionSettings(presets="vla-flow:tiny", shipped_models=False, horizon=1)
    service = EpisodeService(settings, ModelCatalog(settings))
    worker = TurnWorker(queue, service)
    arena, other = TurnStreams(queue, "arena"), TurnStreams(queue, "other")
    await arena.ensure_groups()
    long = (
        job("t1")
        .requests[0]
        .model_copy(update={"model_id": "vla-flow-tiny-random", "max_steps": 200})
    )
    await arena.enqueue(TurnJob(turn_id="t1", requests=(long, long)))
    leasing = asyncio.get_running_loop().create_task(worker.run())
    try:
        for _ in range(100):  # until it has run some steps
            if int((await arena.snapshot(1)).steps.get("t1", 0)) > 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("the worker never started the turn")
    finally:
        worker.stop()
        await asyncio.wait_for(leasing, 10)
    assert service.admitted == 0  # its episodes stopped before their slots were freed
    taken = await other.lease()  # at once, not after the lease
    assert taken is not None
    assert (taken.job.turn_id, taken.attempts) == ("t1", 1)
    service.close()
    for streams in (arena, other):
        await streams.aclose()


def test_a_worker_needs_room_for_both_episodes_of_a_turn(queue: QueueSettings) -> None:
    settings = ExecutionSettings(
        presets="", shipped_models=False, max_concurrent_episodes=1, max_waiting_episodes=0
    )
    service = EpisodeService(settings, ModelCatalog(settings))
    with pytest.raises(ConfigError, match="at least 2"):
        TurnWorker(queue, service)
    service.close()
