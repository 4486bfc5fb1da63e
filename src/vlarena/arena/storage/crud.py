"""Every query of sessions, battles, turns, episodes and votes; each runs in the caller's session.

Writers take the session of a transaction (`db.begin()`) and leave committing to it.
"""

import statistics
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import joinedload, lazyload, undefer

from vlarena.arena.schemas import VoteCreate
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import (
    BattleRow,
    EpisodeRow,
    SessionRow,
    TurnRow,
    VoteRow,
    utcnow,
)
from vlarena.errors import UnknownNameError
from vlarena.execution.schemas import ExecuteResponse

ACTIVE = ("queued", "running")  # turn states with work still to do


def new_id() -> str:
    return uuid.uuid4().hex


# Sessions -------------------------------------------------------------------------------
def add_session(s: DbSession, token_sha256: str, ip: str) -> str:
    session_id = new_id()
    s.add(SessionRow(id=session_id, token_sha256=token_sha256, ip=ip[:64]))
    return session_id


async def session_by_token(s: DbSession, token_sha256: str) -> str | None:
    """The id of the session whose token has this digest."""
    return await s.scalar(select(SessionRow.id).where(SessionRow.token_sha256 == token_sha256))


# Battles --------------------------------------------------------------------------------
def add_battle(
    s: DbSession, session_id: str, scene_id: str, model_a: str, model_b: str
) -> BattleRow:
    battle = BattleRow(
        id=new_id(),
        session_id=session_id,
        scene_id=scene_id,
        model_a=model_a,
        model_b=model_b,
        turns=[],
        vote=None,
    )
    s.add(battle)
    return battle


async def get_battle(s: DbSession, battle_id: str, *, lock: bool = False) -> BattleRow:
    """A battle with its turns, episodes and vote (UnknownNameError if there is none).

    `lock` first writes the row (a no-op update): PostgreSQL then holds the row lock and
    SQLite its database write lock until the transaction ends, so a concurrent vote and
    turn cannot both pass their checks.
    """
    if lock:
        await s.execute(update(BattleRow).where(BattleRow.id == battle_id).values(id=BattleRow.id))
    found = await s.get(BattleRow, battle_id)
    if found is None:
        raise UnknownNameError("battle", battle_id, [])
    return found


# Turns ----------------------------------------------------------------------------------
def add_turn(
    battle: BattleRow, instruction: str, seed: int, max_steps: int, key: str | None
) -> TurnRow:
    """The battle's next turn, queued (stored when the battle's session commits)."""
    turn = TurnRow(
        id=new_id(),
        battle_id=battle.id,
        number=len(battle.turns) + 1,
        instruction=instruction,
        seed=seed,
        max_steps=max_steps,
        status="queued",
        error=None,
        idempotency_key=key,
        finished_at=None,
        episodes=[],
    )
    battle.turns.append(turn)
    return turn


def turn_by_key(battle: BattleRow, key: str) -> TurnRow | None:
    """The battle's turn made with this idempotency key, if any."""
    return next((t for t in battle.turns if t.idempotency_key == key), None)


async def start_turn(s: DbSession, turn_id: str) -> None:
    await s.execute(update(TurnRow).where(TurnRow.id == turn_id).values(status="running"))


async def finish_turns(
    s: DbSession, turn_id: str | None, error: dict[str, Any] | None = None
) -> int:
    """Set an active turn (None: every active turn) done, or failed with this error body;
    returns how many changed."""
    query = update(TurnRow).where(TurnRow.status.in_(ACTIVE))
    if turn_id is not None:
        query = query.where(TurnRow.id == turn_id)
    status = "failed" if error is not None else "done"
    result = await s.execute(query.values(status=status, error=error, finished_at=utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


async def lock_turn(s: DbSession, turn_id: str) -> TurnRow | None:
    """A turn with its battle, its row locked for the transaction as `get_battle` locks a
    battle (None: no such turn)."""
    await s.execute(update(TurnRow).where(TurnRow.id == turn_id).values(id=TurnRow.id))
    query = (
        select(TurnRow)
        .where(TurnRow.id == turn_id)
        .options(joinedload(TurnRow.battle).lazyload("*"), lazyload(TurnRow.episodes))
    )
    return (await s.execute(query)).unique().scalar_one_or_none()


async def active_turns(s: DbSession, created_before: datetime) -> list[TurnRow]:
    """Turns with work to do, added before a moment, oldest first, with their battles."""
    query = (
        select(TurnRow)
        .where(TurnRow.status.in_(ACTIVE), TurnRow.created_at < created_before)
        .options(joinedload(TurnRow.battle).lazyload("*"), lazyload(TurnRow.episodes))
        .order_by(TurnRow.created_at)
    )
    return list((await s.execute(query)).unique().scalars())


# Episodes and votes ---------------------------------------------------------------------
def add_episode(
    s: DbSession, turn_id: str, side: str, model_id: str, result: ExecuteResponse
) -> None:
    calls = [state.inference_ms for state in result.states if state.inference_ms > 0]
    s.add(
        EpisodeRow(
            id=new_id(),
            turn_id=turn_id,
            side=side,
            model_id=model_id,
            success=result.success,
            num_steps=result.metadata.num_steps,
            duration_ms=result.duration_ms,
            task_kind=result.task.kind,
            inference_ms=statistics.median(calls) if calls else None,
            data=result,
        )
    )


async def get_episode(s: DbSession, battle_id: str, number: int, side: str) -> EpisodeRow | None:
    """One side's episode of a battle's turn, with its whole document."""
    return await s.scalar(
        select(EpisodeRow)
        .options(undefer(EpisodeRow.data))
        .join(TurnRow)
        .where(TurnRow.battle_id == battle_id, TurnRow.number == number, EpisodeRow.side == side)
    )


def add_vote(s: DbSession, battle: BattleRow, session_id: str, vote: VoteCreate) -> None:
    battle.vote = VoteRow(
        id=new_id(),
        battle_id=battle.id,
        session_id=session_id,
        choice=vote.choice,
        score_a=vote.score_a,
        score_b=vote.score_b,
        reason=vote.reason,
    )
