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
    results = await arena.next_results()
    assert [(r.turn_id, r.worker) for _, r in results if r] == [("t1", "w2")]
    await arena.settle(results[0][0], "t1")
    assert await arena.known(["t1"]) == set()
    assert await arena.redis.xlen(arena.turns) == 0
    for streams in (first, second, arena):
        await streams.aclose()


async def test_a_turn_handed_back_is_taken_at_once(queue: QueueSettings) -> None:
    first, second = TurnStreams(queue, "w1"), TurnStreams(queue, "w2")
    await first.ensure_groups()
    await first.enqueue(job("t1"))
    held = await first.lease()
    assert held is not None
    await first.give_up(held.entry_id)  # e.g. its service is saturated
    taken = await second.lease()
    assert taken is not None
    assert taken.entry_id == held.entry_id
    await first.aclose()
    await second.aclose()


async def test_malformed_entries_are_dropped_and_places_keep_order(queue: QueueSettings) -> None:
    streams = TurnStreams(queue, "w1")
    await streams.ensure_groups()
    await streams.redis.xadd(streams.turns, {"turn": "x", "job": "{not json"})
    for turn in ("t1", "t2", "t3"):
        await streams.enqueue(job(turn))
    snapshot = await streams.snapshot()
    assert snapshot.positions == {"x": 1, "t1": 2, "t2": 3, "t3": 4}
    assert await streams.lease() is None  # the malformed one: dropped, not retried
    held = await streams.lease()
    assert held is not None
    assert held.job.turn_id == "t1"
    await streams.report("t1", 7)
    snapshot = await streams.snapshot()
    assert (snapshot.running, snapshot.positions, snapshot.steps) == (
        1,
        {"t2": 1, "t3": 2},
        {"t1": 7},
    )
    assert await streams.known(["t1", "t2", "zz"]) == {"t1", "t2"}
    await streams.aclose()


def test_the_queue_url_must_be_redis() -> None:
    with pytest.raises(ValueError, match="redis://"):
        QueueSettings(url="amqp://guest@127.0.0.1")
