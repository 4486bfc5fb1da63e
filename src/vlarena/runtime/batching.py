"""Dynamic batching: requests from many clients for one policy, run together on one worker.

A request waits at most `max_delay_s` for others to join its batch (or until `max_batch` are
queued). The queue is bounded; a full queue refuses at once. A request whose deadline passes
while queued is dropped before inference; a cancelled one leaves the queue.
"""

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from vlarena.errors import DeadlineExceededError, QueueFullError, UnavailableError, VLArenaError
from vlarena.policies import Policy
from vlarena.types import ActionChunk, Observation

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    observation: Observation
    seed: int | None
    deadline: float  # event-loop time
    enqueued: float
    future: asyncio.Future[ActionChunk] = field(default_factory=asyncio.Future)
    abandoned: bool = False  # the caller stopped waiting (cancelled or deadline passed)


BatchHook = Callable[[int, float], None]  # (batch size, compute seconds), e.g. for metrics


class DynamicBatcher:
    """Collects requests for one policy into batches run on the device's single worker thread."""

    def __init__(
        self,
        policy: Policy,
        executor: Executor,
        max_batch: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: BatchHook | None = None,
    ) -> None:
        self.policy = policy
        self._executor = executor
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._max_queue = max_queue
        self._on_batch = on_batch
        self._queue: collections.deque[_Request] = collections.deque()
        self._admitted = 0  # places taken by requests not yet queued (being decoded)
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Requests waiting to be batched (queued, or admitted and being decoded)."""
        return len(self._queue) + self._admitted

    def admit(self) -> "Place":
        """Take a place in the queue now, before costly decoding; raise at once if none is left.

        Use it as a context manager: a place not submitted by the end is given back.
        """
        if self._closing:
            raise UnavailableError("server is shutting down")
        if len(self._queue) + self._admitted >= self._max_queue:
            raise QueueFullError(f"request queue is full ({self._max_queue}); retry later")
        self._admitted += 1
        return Place(self)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(
        self, observation: Observation, seed: int | None, deadline: float
    ) -> ActionChunk:
        """Admit and queue one observation (see `Place.submit`)."""
        with self.admit() as place:
            return await place.submit(observation, seed, deadline)

    async def _answer(self, request: _Request, place: "Place") -> ActionChunk:
        """Queue the request in its place; its chunk, once its batch has run."""
        place.give_back()  # the queue itself holds it now
        self._queue.append(request)
        self._wakeup.set()
        try:
            async with asyncio.timeout_at(request.deadline):
                return await asyncio.shield(request.future)
        except TimeoutError:
            raise DeadlineExceededError(
                "deadline exceeded before the action chunk was ready"
            ) from None
        finally:
            if not request.future.done():  # cancelled or timed out while waiting
                request.abandoned = True
                if request in self._queue:
                    self._queue.remove(request)

    async def close(self) -> None:
        """Stop taking requests, finish the queued ones, stop the loop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Let the batch fill up until max_batch or the oldest request's delay runs out.
            while len(self._queue) < self._max_batch and not self._closing:
                remaining = self._queue[0].enqueued + self._max_delay_s - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
                if not self._queue:
                    break
            batch = self._take_batch(loop.time())
            if batch:
                await self._execute(batch, loop)

    def _take_batch(self, now: float) -> list[_Request]:
        batch: list[_Request] = []
        while self._queue and len(batch) < self._max_batch:
            request = self._queue.popleft()
            if request.future.done():
                continue
            if request.deadline <= now:
                request.future.set_exception(
                    DeadlineExceededError(
                        "deadline exceeded while queued; dropped before inference"
                    )
                )
                request.future.exception()  # retrieved: the waiter may be gone already
                continue
            batch.append(request)
        return batch

    async def _execute(self, batch: list[_Request], loop: asyncio.AbstractEventLoop) -> None:
        """Run one batch; whatever goes wrong fails that batch's requests, never the loop."""
        try:
            live, chunks, started, compute_s = await loop.run_in_executor(
                self._executor, self._predict_live, batch, loop.time
            )
            if len(chunks) != len(live):
                raise RuntimeError(f"policy returned {len(chunks)} chunks for {len(live)} inputs")
            for request in batch:
                if request not in live:
                    _fail(request, DeadlineExceededError("deadline passed before inference"))
            for request, chunk in zip(live, chunks, strict=True):
                if not request.future.done():
                    if "policy" not in chunk.timing_ms:  # a policy that does not time itself
                        chunk = chunk.timed("policy", compute_s * 1000.0, batch_size=len(live))
                    queued_ms = (started - request.enqueued) * 1000.0
                    request.future.set_result(chunk.timed("queue", queued_ms))
            if live and self._on_batch is not None:
                self._on_batch(len(live), compute_s)
        except Exception as exc:
            if not isinstance(exc, VLArenaError):
                log.exception("batch of %d failed", len(batch))
            for request in batch:
                _fail(request, exc)

    def _predict_live(
        self, batch: list[_Request], clock: Callable[[], float]
    ) -> tuple[list[_Request], list[ActionChunk], float, float]:
        """On the worker thread: drop what expired or was abandoned while waiting, then predict."""
        started = clock()
        live = [r for r in batch if not r.abandoned and r.deadline > started]
        if not live:
            return [], [], started, 0.0
        chunks = self.policy.predict([r.observation for r in live], [r.seed for r in live])
        return live, chunks, started, clock() - started


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)
        request.future.exception()  # marked retrieved: its waiter may be gone already


class Place:
    """An admitted request's place in a batcher's queue (DynamicBatcher.admit)."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher: DynamicBatcher | None = batcher

    async def submit(
        self, observation: Observation, seed: int | None, deadline: float
    ) -> ActionChunk:
        """Queue a checked observation; returns its chunk (timed "queue") or raises a domain
        error (DeadlineExceededError once `deadline`, event-loop time, passes)."""
        batcher = self._batcher
        if batcher is None:
            raise RuntimeError("this place was already used")
        loop = asyncio.get_running_loop()
        try:
            return await batcher._answer(_Request(observation, seed, deadline, loop.time()), self)
        finally:
            self.give_back()

    def give_back(self) -> None:
        """Free the place (idempotent)."""
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher._admitted -= 1

    def __enter__(self) -> "Place":
        return self

    def __exit__(self, *exc: object) -> None:
        self.give_back()
