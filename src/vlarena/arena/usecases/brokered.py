"""Turns on the durable queue: an arena process stores a turn and queues it, execution workers
run it, and any arena process stores its result, once.

Every arena process runs three loops: `_watch` refreshes the queue's places and progress (and
whether the broker is up), `_collect` stores results (a dead process's pending ones too, once
idle past the lease), and `_sweep` re-queues active turns the broker does not hold (one stored
while the broker was down, or lost with its data). The turn's row is the judge of exactly once:
a result for a turn no longer active is dropped.
"""

import asyncio
import contextlib
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
from vlarena.arena.views import Live, concealed
from vlarena.broker import Delivered, QueueSettings, Snapshot, TurnJob, TurnResult, TurnStreams
from vlarena.errors import BusyError, QueueUnavailableError
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
        self.added = 0  # queued by this process since the snapshot was asked for

    @property
    def counts(self) -> dict[str, int | str]:
        return {
            "running": self.snapshot.running,
            "queued": self.snapshot.waiting + self.added,
            "queue": "up" if self.up else "down",
        }

    def check_room(self) -> None:
        if not self.up:
            raise QueueUnavailableError("the turn queue is unavailable; retry later")
        waiting = self.snapshot.waiting + self.added + self._reserved
        if waiting >= self.limit:
            raise BusyError(f"{waiting} turns wait for an execution worker; retry later")

    def reserve(self) -> None:
        self.check_room()
        self._reserved += 1

    def release(self) -> None:
        self._reserved -= 1

    def seen(self, snapshot: Snapshot, added_before: int) -> None:
        """A new snapshot, asked for when this process had queued `added_before` turns."""
        self.snapshot, self.up = snapshot, True
        self.added -= added_before


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
        self._stopping = asyncio.Event()

    def live(self, turn_id: str) -> Live:
        snapshot = self.queue.snapshot
        return Live(snapshot.positions.get(turn_id), snapshot.steps.get(turn_id))

    async def submit(self, turn_id: str, episodes: Episodes) -> None:
        self.queue.release()
        try:
            await self.streams.enqueue(TurnJob(turn_id=turn_id, requests=episodes.requests))
            self.queue.added += 1
        except RedisError as exc:  # stored all the same: the sweep queues it later
            self.queue.up = False
            log.warning("turn %s stored but not queued (%s); the sweep will queue it", turn_id, exc)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._until_stopped(self._watch, self.settings.poll_s)),
            loop.create_task(self._until_stopped(self._collect, 0.0)),
            loop.create_task(self._until_stopped(self._sweep, self.settings.sweep_s)),
        ]

    async def close(self) -> None:
        """Let the loops finish their step (a second at most; redis-py's calls are not
        cancelled: it may leave a cancelled task running)."""
        self._stopping.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.streams.aclose()

    async def _until_stopped(self, step: Callable[[], Awaitable[None]], pause_s: float) -> None:
        while not self._stopping.is_set():
            wait_s = pause_s
            try:
                await step()
            except RedisError as exc:  # redis-py's own, connection errors included
                self.queue.up = False
                log.warning("turn queue unavailable: %s", exc)
                wait_s = max(pause_s, RETRY_S)
            except Exception:  # the database, say: the step runs again
                log.exception("turn queue step %s failed", step.__name__)
                wait_s = max(pause_s, RETRY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait_s)

    async def _watch(self) -> None:
        added = self.queue.added
        self.queue.seen(await self.streams.snapshot(self.queue.limit + 1), added)

    async def _collect(self) -> None:
        for delivered in await self.streams.next_results():
            try:
                await self._take(delivered)
            except RedisError:
                raise
            except Exception:  # this one comes back after the lease; the others go on
                log.exception("result of turn %s not stored", delivered.turn_id)

    async def _take(self, delivered: Delivered) -> None:
        """Store one result, then settle it. An unreadable one fails its turn; so does one that
        could not be stored `max_attempts` times (rather than leave the turn active)."""
        failed = (
            TurnResult.failed(delivered.turn_id, "arena", FAILED) if delivered.turn_id else None
        )
        try:
            if (result := delivered.result or failed) is not None:
                await self._store(result)
        except Exception:
            if delivered.attempts <= self.settings.max_attempts or failed is None:
                raise
            log.exception("turn %s: its result cannot be stored; failing it", delivered.turn_id)
            await self._store(failed)
        turn_id = delivered.turn_id or (delivered.result.turn_id if delivered.result else None)
        await self.streams.settle(delivered.entry_id, turn_id)

    async def _sweep(self) -> None:
        """Queue active turns the broker does not hold: stored while it was down, or lost."""
        before = utcnow() - timedelta(seconds=self.settings.sweep_s)
        async with self.db() as s:
            turns = await crud.active_turns(s, before)
        known = await self.streams.known([t.id for t in turns])
        lost = [t for t in turns if t.id not in known]
        if not lost:
            return
        async with self.db() as s:  # one settled since the first read is over now: skip it
            still = {t.id for t in await crud.active_turns(s, before)}
        for turn in lost:
            if turn.id not in still:
                continue
            episodes = Episodes.of(turn.battle, turn.instruction, turn.seed, turn.max_steps)
            job = TurnJob(turn_id=turn.id, requests=episodes.requests)
            if await self.streams.requeue(job):
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
                error = _shown(models, result.error)
            body = error.model_dump(exclude_none=True) if error is not None else None
            await crud.finish_turns(s, turn.id, body)


def _shown(models: tuple[str, str], error: ErrorBody | None) -> ErrorBody:
    """A worker's error as the battle shows it (models anonymous)."""
    return FAILED if error is None else ErrorBody.of(concealed(error.to_error(), models))
