"""Running stored turns. `TurnRunner` is the seam: `LocalRunner` runs both episodes of a turn
in this process's queue, storing each as it arrives; `BrokeredRunner`
(`arena.usecases.brokered`) hands turns to execution workers through a durable queue."""

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.client import ExecutionClient
from vlarena.arena.queue import TurnQueue
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage import crud
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import BattleRow
from vlarena.arena.views import Live, hidden
from vlarena.errors import ExecutionFailedError, InvalidRequestError, UnknownNameError, VLArenaError
from vlarena.execution.schemas import ExecuteRequest
from vlarena.httpjson import ErrorBody

log = logging.getLogger(__name__)
SIDES: tuple[Literal["a"], Literal["b"]] = ("a", "b")
FAILED = ErrorBody(error=VLArenaError.wire.name, detail="the arena failed to run this turn")
STOPPED = ErrorBody(error="interrupted", detail="the arena stopped before the turn finished")
RESTARTED = ErrorBody(error="interrupted", detail="the arena restarted before the turn finished")


ROBOT = "franka"


@dataclass(frozen=True)
class Episodes:
    """What a turn runs: the battle's two models, each on its request (same seed and scene)."""

    models: tuple[str, str]  # sides a and b
    seed: int
    requests: tuple[ExecuteRequest, ExecuteRequest]

    @classmethod
    def of(cls, battle: BattleRow, instruction: str, seed: int, max_steps: int) -> "Episodes":
        """Both sides' requests: same scene, instruction, seed and step budget."""
        models = (battle.model_a, battle.model_b)
        a, b = (
            ExecuteRequest(
                model_id=model,
                robot_id=ROBOT,
                scene_id=battle.scene_id,
                instruction=instruction,
                seed=seed,
                max_steps=max_steps,
            )
            for model in models
        )
        return cls(models, seed, (a, b))


class Places(Protocol):
    """Room for turns: refused early when full, reserved before a turn is stored."""

    @property
    def counts(self) -> dict[str, int | str]:
        """Turns running and queued, and where the queue is ("local", or the broker "up" or
        "down")."""
        ...

    def check_room(self) -> None: ...

    def reserve(self) -> None: ...

    def release(self) -> None: ...


class TurnRunner(ABC):
    """Where stored turns wait and run; `queue` holds their places."""

    queue: Places

    @abstractmethod
    def live(self, turn_id: str) -> Live:
        """A turn's queue place or progress."""

    @abstractmethod
    async def submit(self, turn_id: str, episodes: Episodes) -> None:
        """Run a stored turn in the place reserved for it (`queue.reserve()`)."""

    @abstractmethod
    async def start(self) -> None:
        """Take up (or settle) the turns a previous process left active."""

    @abstractmethod
    async def close(self) -> None:
        """Stop running turns; what is stored stays stored."""


class LocalRunner(TurnRunner):
    """Turns run in this process's queue (the embedded default: one arena process)."""

    queue: TurnQueue

    def __init__(
        self, settings: ArenaSettings, db: async_sessionmaker[DbSession], client: ExecutionClient
    ) -> None:
        self.db = db
        self.client = client
        self.queue = TurnQueue(settings.max_running_turns, settings.max_queued_turns, self._crashed)
        self._progress: dict[str, dict[str, int]] = {}  # running turn → steps done per side

    def live(self, turn_id: str) -> Live:
        steps = self._progress.get(turn_id)
        done = None if steps is None else min(steps.get(side, 0) for side in SIDES)
        return Live(self.queue.position(turn_id), done)

    async def submit(self, turn_id: str, episodes: Episodes) -> None:
        self.queue.submit(turn_id, lambda: self._run(turn_id, episodes))

    async def start(self) -> None:
        """Turns left queued or running by a previous process are marked failed (not lost).

        One arena process per database: a second one would fail the first one's turns (the
        brokered runner has no such limit).
        """
        await self._finish(None, RESTARTED)

    async def close(self) -> None:
        await self.queue.close()

    async def _run(self, turn_id: str, episodes: Episodes) -> None:
        """Run both episodes concurrently; store each as it arrives; record the outcome."""
        error: ErrorBody | None = None
        try:
            async with self.db.begin() as s:
                await crud.start_turn(s, turn_id)
            outcomes = await asyncio.gather(
                *(
                    hidden(episodes.models, self._episode(turn_id, side, request))
                    for side, request in zip(SIDES, episodes.requests, strict=True)
                ),
                return_exceptions=True,
            )
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            error = ErrorBody.of(failures[0]) if failures else None
        except asyncio.CancelledError:
            error = STOPPED
            raise
        except Exception:
            error = FAILED
            raise
        finally:
            self._progress.pop(turn_id, None)
            await self._finish(turn_id, error)

    async def _episode(self, turn_id: str, side: str, request: ExecuteRequest) -> None:
        steps = self._progress.setdefault(turn_id, {})

        def progress(done: int) -> None:
            steps[side] = done

        try:
            result = await self.client.execute(request, progress)
        except (InvalidRequestError, UnknownNameError) as exc:
            # The request passed the service's check when the turn was added: a refusal now is
            # the model's (it cannot drive this robot, say), and its text could tell the sides
            # apart before the vote. The user sees a generic failure; the log keeps the detail.
            raise ExecutionFailedError(f"{request.model_id}: {exc}") from None
        progress(result.metadata.max_steps)  # this side is over: the other one's count shows
        async with self.db.begin() as s:
            crud.add_episode(s, turn_id, side, request.model_id, result)

    async def _crashed(self, turn_id: str, exc: BaseException) -> None:
        """A turn whose bookkeeping itself failed (e.g. the database): fail it if we can."""
        try:
            await self._finish(turn_id, FAILED)
        except Exception:
            log.exception("could not mark turn %s failed; the next start will", turn_id)

    async def _finish(self, turn_id: str | None, error: ErrorBody | None) -> int:
        """Set a turn (None: every active turn) done, or failed with `error`."""
        body = error.model_dump(exclude_none=True) if error is not None else None
        async with self.db.begin() as s:
            return await crud.finish_turns(s, turn_id, body)
