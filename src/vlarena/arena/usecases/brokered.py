"""Turns on the durable queue: an arena process stores a turn and queues it, execution workers
run it, and any arena process stores its result, once.

Every arena process runs three loops: `_watch` refreshes the queue's places and progress (and
whether the broker is up), `_collect` stores results (a dead process's pending ones too, once
idle past the lease), and `_sweep` re-queues active turns the broker does not hold (one stored
while the broker was down, or lost with its data). The turn's row is the judge of exactly once:
a result for a turn no longer active is dropped.
"""

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage import crud
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import utcnow
from vlarena.arena.usecases.runner import FAILED, SIDES, Episodes, TurnRunner
from vlarena.arena.views import Live, hidden
from vlarena.broker import QueueSettings, Snapshot, TurnJob, TurnResult, TurnStreams
from vlarena.errors import BusyError, QueueUnavailableError, VLArenaError
from vlarena.httpjson import ErrorBody

log = logging.getLogger(__name__)
RETRY_S = 1.0  # pause after a failed loop step


class BrokerPlaces:
    """Room on the queue, judged from the latest snapshot plus what this process added since."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # turns waiting for a worker, at most
        self.snapshot = Snapshot()
        self.up = False  # whether the last call to the broker worked
        self._reserved = 0
        self._added = 0  # queued since the snapshot

    @property
    def state(self) -> str:
        return "up" if self.up else "down"

    @property
    def counts(self) -> dict[str, int]:
        return {"running": self.snapshot.running, "queued": self.snapshot.waiting + self._added}

    def check_room(self) -> None:
        if not self.up:
            raise QueueUnavailableError("the turn queue is unavailable; retry later")
        waiting = self.snapshot.waiting + self._added + self._reserved
        if waiting >= self.limit:
            raise BusyError(f"{waiting} turns wait for an execution worker; retry later")

    def reserve(self) -> None:
        self.check_room()
        self._reserved += 1

    def release(self) -> None:
        self._reserved -= 1

    def seen(self, snapshot: Snapshot) -> None:
        self.snapshot, self._added, self.up = snapshot, 0, True

    def queued(self) -> None:
        self._added += 1


class BrokeredRunner(TurnRunner):
    """Turns run on execution workers behind the broker; any number of arena processes."""

    queue: BrokerPlaces

    def __init__(
        self, settings: ArenaSettings, queue: QueueSettings, db: async_sessionmaker[DbSession]
    ) -> None:
        self.db = db
        self.settings = queue
        self.streams = TurnStreams(queue, f"arena-{socket.gethostname()}-{os.getpid()}")
        self.queue = BrokerPlaces(settings.max_running_turns + settings.max_queued_turns)
        self._loops: list[asyncio.Task[None]] = []

    def live(self, turn_id: str) -> Live:
        snapshot = self.queue.snapshot
        return Live(snapshot.positions.get(turn_id), snapshot.steps.get(turn_id))

    async def submit(self, turn_id: str, episodes: Episodes) -> None:
        self.queue.release()
        try:
            await self.streams.enqueue(TurnJob(turn_id=turn_id, requests=episodes.requests))
            self.queue.queued()
        except (RedisError, OSError) as exc:  # stored all the same: the sweep queues it later
            self.queue.up = False
            log.warning("turn %s stored but not queued (%s); the sweep will queue it", turn_id, exc)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._forever(self._watch, self.settings.poll_s)),
            loop.create_task(self._forever(self._collect, 0.0)),
            loop.create_task(self._forever(self._sweep, self.settings.sweep_s)),
        ]

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.streams.aclose()

    async def _forever(self, step: Callable[[], Awaitable[None]], pause_s: float) -> None:
        while True:
            try:
                await step()
            except (RedisError, OSError) as exc:
                self.queue.up = False
                log.warning("turn queue unavailable: %s", exc)
                await asyncio.sleep(RETRY_S)
            except Exception:  # the database, say: the step runs again
                log.exception("turn queue step %s failed", step.__name__)
                await asyncio.sleep(RETRY_S)
            else:
                await asyncio.sleep(pause_s)

    async def _watch(self) -> None:
        self.queue.seen(await self.streams.snapshot())

    async def _collect(self) -> None:
        for entry_id, result in await self.streams.next_results():
            if result is not None:
                await self._store(result)
            else:
                log.error("dropped a malformed entry %s of the results stream", entry_id)
            await self.streams.settle(entry_id, result.turn_id if result else None)

    async def _sweep(self) -> None:
        before = utcnow() - timedelta(seconds=self.settings.sweep_s)
        async with self.db() as s:
            turns = await crud.active_turns(s, before)
        known = await self.streams.known([t.id for t in turns])
        for turn in turns:
            if turn.id not in known:
                episodes = Episodes.of(turn.battle, turn.instruction, turn.seed, turn.max_steps)
                await self.streams.enqueue(TurnJob(turn_id=turn.id, requests=episodes.requests))
                log.warning("turn %s was not on the queue; queued it again", turn.id)

    async def _store(self, result: TurnResult) -> None:
        """Store a turn's episodes and outcome, unless the turn is over (a duplicate)."""
        async with self.db.begin() as s:
            turn = await crud.lock_turn(s, result.turn_id)
            if turn is None or turn.status not in crud.ACTIVE:
                log.info(
                    "turn %s: a repeated result from %s dropped", result.turn_id, result.worker
                )
                return
            models = (turn.battle.model_a, turn.battle.model_b)
            error: ErrorBody | None = None
            if result.episodes is not None:
                for side, model, episode in zip(SIDES, models, result.episodes, strict=True):
                    crud.add_episode(s, turn.id, side, model, episode)
            else:
                error = await _shown(models, result.error)
            body = error.model_dump(exclude_none=True) if error is not None else None
            await crud.finish_turns(s, turn.id, body)


async def _shown(models: tuple[str, str], error: ErrorBody | None) -> ErrorBody:
    """A worker's error as the battle shows it (models anonymous)."""
    if error is None:
        return FAILED

    async def fail() -> None:
        raise error.to_error()

    try:
        await hidden(models, fail())
    except VLArenaError as exc:
        return ErrorBody.of(exc)
    return FAILED
