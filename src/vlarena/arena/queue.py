"""The turn queue: a bounded number of turns run at once, a bounded FIFO waits behind them."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from vlarena.errors import BusyError

log = logging.getLogger(__name__)


class TurnQueue:
    """At most `running` turns at once and `queued` waiting; places are reserved up front."""

    def __init__(
        self,
        running: int,
        queued: int,
        on_crash: Callable[[str, BaseException], Awaitable[None]],
    ) -> None:
        self._slots = asyncio.Semaphore(running)
        self._limit = running + queued
        self._on_crash = on_crash
        self._waiting: list[str] = []
        self._running = 0
        self._reserved = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def counts(self) -> dict[str, int | str]:
        return {"running": self._running, "queued": len(self._waiting), "queue": "local"}

    def check_room(self) -> None:
        """BusyError unless a place is free (cheap: call it before any other work)."""
        if self._running + len(self._waiting) + self._reserved >= self._limit:
            raise BusyError(
                f"{self._running} turns running and {len(self._waiting)} queued; retry later"
            )

    def reserve(self) -> None:
        """Hold a place for a turn about to be stored (BusyError if none is left)."""
        self.check_room()
        self._reserved += 1

    def release(self) -> None:
        """Give back a reserved place that was not used."""
        self._reserved -= 1

    def position(self, turn_id: str) -> int | None:
        """1 for the next turn to run; None unless the turn waits."""
        return self._waiting.index(turn_id) + 1 if turn_id in self._waiting else None

    def submit(self, turn_id: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run a stored turn (`run()`) in the reserved place."""
        self._reserved -= 1
        self._waiting.append(turn_id)
        task = asyncio.get_running_loop().create_task(self._guarded(turn_id, run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, turn_id: str, run: Callable[[], Awaitable[None]]) -> None:
        try:
            async with self._slots:  # asyncio wakes waiters first come, first served
                self._waiting.remove(turn_id)
                self._running += 1
                try:
                    await run()
                finally:
                    self._running -= 1
        except Exception as exc:  # never leave a turn "running" without a task behind it
            log.exception("turn %s crashed", turn_id)
            await self._on_crash(turn_id, exc)
        finally:
            if turn_id in self._waiting:
                self._waiting.remove(turn_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
