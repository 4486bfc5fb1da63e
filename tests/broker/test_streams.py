"""The turn queue on a real Redis: leases run out and move, malformed entries are dropped,
waiting turns keep their order."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from vlarena.broker import QueueSettings, TurnJob, TurnResult, TurnStreams
from vlarena.execution.schemas import ExecuteRequest

REDIS = "redis://127.0.0.1:6379/0"


def job(turn_id: str) -> TurnJob:
    request = ExecuteRequest(
        model_id="m", robot_id="franka", scene_id="table", instruction="touch the red cube"
    )
    return TurnJob(
        turn_id=turn_id, requests=(request, request.model_copy(update={"model_id": "n"}))
    )


@pytest.fixture
async def queue() -> AsyncIterator[QueueSettings]:
    settings = QueueSettings(url=REDIS, prefix=f"test-{uuid.uuid4().hex[:8]}", lease_s=0.3)
    yield settings
    streams = TurnStreams(settings, "cleaner")
    keys = [streams.turns, streams.results, streams.live, streams.progress]
    await streams.redis.delete(*keys)
    await streams.aclose()


async def test_a_lease_that_runs_out_moves_to_another_worker(queue: QueueSettings) -> None:
    first, second, arena = (TurnStreams(queue, name) for name in ("w1", "w2", "arena"))
    await arena.ensure_groups()
    await arena.enqueue(job("t1"))
    held = await first.lease()
    assert held is not None
    assert (held.job.turn_id, held.attempts) == ("t1", 1)
    assert await first.renew(held.entry_id)
    assert await second.lease() is None  # leased and renewed: nobody else gets it
    await asyncio.sleep(queue.lease_s + 0.1)  # the first worker goes silent
    retried = await second.lease()
    assert retried is not None
    assert (retried.entry_id, retried.attempts) == (held.entry_id, 2)
    assert not await first.renew(held.entry_id)  # its lease is lost: it must stop
    await second.complete(retried.entry_id, TurnResult(turn_id="t1", worker="w2"))
    (delivered,) = await arena.next_results()
    assert delivered.result is not None
    assert (delivered.turn_id, delivered.result.worker, delivered.attempts) == ("t1", "w2", 1)
    await arena.settle(delivered.entry_id, "t1")
    assert await arena.known(["t1"]) == set()
    assert await arena.redis.xlen(arena.turns) == 0
    for streams in (first, second, arena):
        await streams.aclose()


async def test_a_turn_handed_back_is_taken_at_once_and_costs_no_attempt(
    queue: QueueSettings,
) -> None:
    first, second = TurnStreams(queue, "w1"), TurnStreams(queue, "w2")
    await first.ensure_groups()
    await first.enqueue(job("t1"))
    held = await first.lease()
    assert held is not None
    await first.give_up(held)  # e.g. its service filled up, or it is shutting down
    taken = await second.lease()
    assert taken is not None
    assert (taken.entry_id, taken.attempts) == (held.entry_id, 1)
    await first.aclose()
    await second.aclose()


async def test_an_expired_lease_behind_many_live_ones_is_found(queue: QueueSettings) -> None:
    busy, ghost, late = (TurnStreams(queue, name) for name in ("busy", "ghost", "late"))
    await busy.ensure_groups()
    for n in range(13):
        await busy.enqueue(job(f"t{n}"))
    live = [await busy.lease() for _ in range(12)]  # twelve turns running, renewed
    lost = await ghost.lease()  # the thirteenth, on a worker that dies
    assert lost is not None

    stop = asyncio.Event()

    async def renewing() -> None:  # stopped by a flag: redis-py calls are not cancelled
        while not stop.is_set():
            for held in live:
                assert held is not None
                assert await busy.renew(held.entry_id)
            await asyncio.sleep(queue.lease_s / 4)

    renewals = asyncio.get_running_loop().create_task(renewing())
    await asyncio.sleep(queue.lease_s + 0.1)
    found = None
    try:
        for _ in range(3):  # XAUTOCLAIM scans ten pending entries a call: its cursor moves on
            if (found := await late.lease()) is not None:
                break
    finally:
        stop.set()
        await renewals
    assert found is not None
    assert (found.entry_id, found.attempts) == (lost.entry_id, 2)
    for streams in (busy, ghost, late):
        await streams.aclose()


async def test_a_broker_that_lost_its_groups_is_set_up_again(queue: QueueSettings) -> None:
    streams = TurnStreams(queue, "w1")
    await streams.ensure_groups()
    await streams.redis.delete(streams.turns, streams.results)  # as a restart without data
    assert await streams.lease() is None  # no error: the groups are made again
    assert (await streams.snapshot(10)).waiting == 0
    await streams.enqueue(job("t1"))
    held = await streams.lease()
    assert held is not None
    assert held.job.turn_id == "t1"
    await streams.aclose()


async def test_an_unreadable_job_fails_its_turn_and_places_keep_order(
    queue: QueueSettings,
) -> None:
    streams = TurnStreams(queue, "w1")
    await streams.ensure_groups()
    await streams.redis.xadd(streams.turns, {"turn": "x", "job": "{not json"})
    await streams.redis.xadd(streams.turns, {"job": "{not json, no turn"})
    for turn in ("t1", "t2", "t3"):
        await streams.enqueue(job(turn))
    snapshot = await streams.snapshot(3)
    assert (snapshot.waiting, snapshot.positions) == (5, {"x": 1, "t1": 3})
    assert await streams.lease() is None  # turn x: failed, not retried
    (delivered,) = await streams.next_results()
    assert delivered.result is not None
    assert delivered.result.error is not None
    assert (delivered.turn_id, delivered.result.error.detail) == (
        "x",
        "the queued turn could not be read",
    )
    assert await streams.lease() is None  # no turn named: dropped
    held = await streams.lease()
    assert held is not None
    assert held.job.turn_id == "t1"
    await streams.report("t1", 7)
    snapshot = await streams.snapshot(10)
    assert (snapshot.running, snapshot.waiting, snapshot.positions, snapshot.steps) == (
        1,
        2,
        {"t2": 1, "t3": 2},
        {"t1": 7},
    )
    assert await streams.known(["t1", "t2", "zz"]) == {"t1", "t2"}
    await streams.aclose()


def test_the_queue_url_must_be_redis() -> None:
    with pytest.raises(ValueError, match="redis://"):
        QueueSettings(url="amqp://guest@127.0.0.1")
