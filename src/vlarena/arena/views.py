"""What the API shows of stored battles, and what it hides: models stay anonymous until the vote.

Rows become `BattleOut` / `TurnOut` / `Replay` here; errors from the execution service pass
through `hidden`, so neither a detail nor a list of valid names tells the sides apart.
"""

import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from vlarena.arena.schemas import BattleOut, BattleStatus, EpisodeOut, Replay, TurnOut
from vlarena.arena.storage.crud import ACTIVE
from vlarena.arena.storage.tables import BattleRow, EpisodeRow, TurnRow, aware
from vlarena.errors import (
    ExecutionFailedError,
    InvalidRequestError,
    RetryLaterError,
    UnknownNameError,
    VLArenaError,
)
from vlarena.httpjson import ErrorBody

log = logging.getLogger(__name__)
LABELS = ("model A", "model B")
REVEALED = ("metadata", "timing", "task", "duration_ms")  # of an episode, after the vote
T = TypeVar("T")


@dataclass(frozen=True)
class Live:
    """What the queue knows of an active turn beyond its row."""

    position: int | None = None  # 1 for the next turn to run; None unless it waits
    steps_done: int | None = None  # steps both episodes have done; None unless it runs


class LiveTurns(Protocol):
    """What the turn queue knows of a turn: its place and its progress."""

    def live(self, turn_id: str) -> Live: ...


class Views:
    """Battle rows as the API shows them (models and outcomes only once voted)."""

    def __init__(self, max_turns: int, live: LiveTurns) -> None:
        self.max_turns = max_turns
        self.live = live

    def battle(self, battle: BattleRow) -> BattleOut:
        revealed = battle.vote is not None
        turns = [self.turn(battle, t, revealed) for t in battle.turns]
        return BattleOut(
            battle_id=battle.id,
            url=f"/api/battles/{battle.id}",
            scene_id=battle.scene_id,
            status=status(battle, turns),
            created_at=aware(battle.created_at),
            max_turns=self.max_turns,
            turns=turns,
            model_a=battle.model_a if revealed else None,
            model_b=battle.model_b if revealed else None,
            vote=battle.vote.choice if battle.vote else None,
            score_a=battle.vote.score_a if battle.vote else None,
            score_b=battle.vote.score_b if battle.vote else None,
            reason=battle.vote.reason if battle.vote else None,
        )

    def turn(self, battle: BattleRow, turn: TurnRow, revealed: bool) -> TurnOut:
        base = f"/api/battles/{battle.id}/turns/{turn.number}/episodes"
        live = self.live.live(turn.id) if turn.status in ACTIVE else Live()
        episodes = [
            EpisodeOut(
                side=e.side,
                num_steps=e.num_steps,
                replay_url=f"{base}/{e.side}",
                model_id=e.model_id if revealed else None,
                success=e.success if revealed else None,
            )
            for e in turn.episodes
        ]
        return TurnOut(
            number=turn.number,
            instruction=turn.instruction,
            seed=turn.seed,
            max_steps=turn.max_steps,
            # A worker behind the broker runs a turn whose row still says queued.
            status="running"
            if live.steps_done is not None and turn.status == "queued"
            else turn.status,
            task=turn.task_kind,
            queue_position=live.position,
            steps_done=live.steps_done,
            error=ErrorBody.model_validate(turn.error) if turn.error else None,
            episodes=episodes,
            created_at=aware(turn.created_at),
            finished_at=aware(turn.finished_at) if turn.finished_at else None,
        )


def replay(battle: BattleRow, number: int, episode: EpisodeRow) -> Replay:
    """One episode for the browser's replay; who played it and how it went after the vote."""
    data, revealed = episode.data, battle.vote is not None
    shown = data.model_dump(mode="json", include=set(REVEALED)) if revealed else None
    return Replay(
        battle_id=battle.id,
        turn=number,
        side=episode.side,
        scene_id=data.scene_id,
        robot_id=data.robot_id,
        instruction=data.instruction,
        seed=data.seed,
        mujoco_version=data.mujoco_version,
        initial_qpos=data.initial_qpos,
        qpos=[state.scene_qpos for state in data.states],
        time=[state.time for state in data.states],
        actions=data.actions,
        num_steps=episode.num_steps,
        model_id=episode.model_id if revealed else None,
        success=episode.success if revealed else None,
        revealed={k: shown[k] for k in REVEALED} if shown is not None else None,
    )


def status(battle: BattleRow, turns: list[TurnOut]) -> BattleStatus:
    """The battle's state, from its vote and its turns as shown."""
    if battle.vote is not None:
        return "voted"
    if not turns:
        return "new"
    last = turns[-1].status
    return "ready" if last == "done" else last


async def hidden(models: tuple[str, str], call: Awaitable[T]) -> T:
    """Await `call`; its errors reach the client without naming the hidden models."""
    try:
        return await call
    except (InvalidRequestError, UnknownNameError, ExecutionFailedError, RetryLaterError) as exc:
        raise concealed(exc, models) from None


def concealed(exc: VLArenaError, models: tuple[str, str]) -> VLArenaError:
    """An error from running the battle's models, as its client may see it (models hidden)."""
    if isinstance(exc, InvalidRequestError | UnknownNameError):  # what to fix: kept, anonymized
        return InvalidRequestError(anonymize(str(exc), models))
    if isinstance(exc, ExecutionFailedError):
        log.warning("execution failed: %s", exc)  # the full story stays in the log
        return ExecutionFailedError(
            "the execution service failed to run a model (details in the arena's log)"
        )
    if isinstance(exc, RetryLaterError):
        return type(exc)(anonymize(str(exc), models), exc.retry_after_s)
    return exc


def anonymize(detail: str, models: tuple[str, str]) -> str:
    """Replace whole-name occurrences of the hidden models (longest name first); drop lists of
    valid names, whose order would tell the sides apart."""
    detail = detail.split("; valid:")[0]
    for model, label in sorted(zip(models, LABELS, strict=True), key=lambda p: -len(p[0])):
        detail = re.sub(rf"(?<![\w.-]){re.escape(model)}(?![\w-]|\.[\w-])", label, detail)
    return detail
