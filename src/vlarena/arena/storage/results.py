"""The leaderboard's and the export's queries: voted battles only (open ones stay hidden).

A board may be filtered by task kind (battles with a finished turn of that kind; sim success
and agreement then count those turns only) and by scene.
"""

import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, case, exists, func, select, true
from sqlalchemy.orm import selectinload

from vlarena.arena.ranking import Vote
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import BattleRow, EpisodeRow, TurnRow, VoteRow

WON = func.sum(case((EpisodeRow.success.is_(True), 1), else_=0))


@dataclass(frozen=True)
class BoardFilter:
    """Which voted battles a board counts."""

    task: str | None = None  # a task kind: battles with a finished turn of it
    scene: str | None = None  # a scene id

    def battles(self) -> ColumnElement[bool]:
        """The condition on BattleRow."""
        condition: ColumnElement[bool] = true()
        if self.scene is not None:
            condition = condition & (BattleRow.scene_id == self.scene)
        if self.task is not None:
            played = (
                select(EpisodeRow.id)
                .join(TurnRow, EpisodeRow.turn_id == TurnRow.id)
                .where(TurnRow.battle_id == BattleRow.id, TurnRow.status == "done")
                .where(EpisodeRow.task_kind == self.task)
            )
            condition = condition & exists(played)
        return condition

    def episodes(self, query: Select[Any]) -> Select[Any]:
        """`query` (`_voted_episodes`) narrowed to this filter: episodes of its task kind (of
        done turns, which puts their battle on its board) on its scene."""
        if self.scene is not None:
            query = query.where(BattleRow.scene_id == self.scene)
        return query.where(EpisodeRow.task_kind == self.task) if self.task else query


async def vote_count(s: DbSession) -> int:
    return int(await s.scalar(select(func.count()).select_from(VoteRow)) or 0)


async def votes(s: DbSession, where: BoardFilter) -> list[Vote]:
    """Every vote with its battle's models, in the order they were cast."""
    rows = await s.execute(
        select(BattleRow.model_a, BattleRow.model_b, VoteRow.choice)
        .join(VoteRow, VoteRow.battle_id == BattleRow.id)
        .where(where.battles())
        .order_by(VoteRow.created_at, VoteRow.id)
    )
    return [Vote(a, b, c) for a, b, c in rows]


def _voted_episodes(*columns: Any) -> Select[Any]:
    """`columns` over the episodes of done turns of voted battles."""
    return (
        select(*columns)
        .select_from(EpisodeRow)
        .join(TurnRow, EpisodeRow.turn_id == TurnRow.id)
        .join(BattleRow, BattleRow.id == TurnRow.battle_id)
        .join(VoteRow, VoteRow.battle_id == BattleRow.id)
        .where(TurnRow.status == "done")
    )


async def sim_success(s: DbSession, where: BoardFilter) -> dict[str, tuple[int, int]]:
    """Per model, over voted battles: successful episodes, episodes with a task."""
    query = _voted_episodes(EpisodeRow.model_id, WON, func.count())
    rows = await s.execute(
        where.episodes(query).where(EpisodeRow.success.is_not(None)).group_by(EpisodeRow.model_id)
    )
    return {model: (int(wins or 0), int(n)) for model, wins, n in rows}


async def side_successes(
    s: DbSession, where: BoardFilter
) -> dict[str, tuple[str, str, str, dict[str, int]]]:
    """Per battle with an a/b vote: its models, the choice, and sim successes per side over
    done turns."""
    query = _voted_episodes(
        TurnRow.battle_id, BattleRow.model_a, BattleRow.model_b, VoteRow.choice, EpisodeRow.side
    ).add_columns(WON.label("wins"))
    rows = await s.execute(
        where.episodes(query)
        .where(VoteRow.choice.in_(("a", "b")))
        .group_by(
            TurnRow.battle_id,
            BattleRow.model_a,
            BattleRow.model_b,
            VoteRow.choice,
            EpisodeRow.side,
        )
    )
    battles: dict[str, tuple[str, str, str, dict[str, int]]] = {}
    for battle_id, model_a, model_b, choice, side, wins in rows:
        battles.setdefault(battle_id, (model_a, model_b, choice, {}))[3][side] = int(wins or 0)
    return battles


async def task_kinds(s: DbSession) -> list[str]:
    """The task kinds voted battles have played."""
    query = _voted_episodes(EpisodeRow.task_kind).where(EpisodeRow.task_kind.is_not(None))
    return sorted(await s.scalars(query.distinct()))


async def latency(s: DbSession) -> dict[str, tuple[float, int]]:
    """Per model, over its voted episodes: the median of their median model calls (ms), and
    how many episodes that is."""
    rows = await s.execute(
        _voted_episodes(EpisodeRow.model_id, EpisodeRow.inference_ms).where(
            EpisodeRow.inference_ms.is_not(None)
        )
    )
    calls: dict[str, list[float]] = {}
    for model, ms in rows:
        calls.setdefault(model, []).append(float(ms))
    return {model: (statistics.median(ms), len(ms)) for model, ms in calls.items()}


async def voted_battles(s: DbSession, with_episodes: bool) -> AsyncIterator[BattleRow]:
    """Voted battles in vote order, with turns, episodes (documents if asked) and vote."""
    query = (
        select(BattleRow)
        .join(VoteRow, VoteRow.battle_id == BattleRow.id)
        .order_by(VoteRow.created_at, BattleRow.id)
    )
    # Collections load per chunk of 200 battles (joined loading cannot stream).
    episodes = selectinload(BattleRow.turns).selectinload(TurnRow.episodes)
    if with_episodes:
        episodes = episodes.undefer(EpisodeRow.data)
    query = query.options(episodes, selectinload(BattleRow.vote))
    async for battle in await s.stream_scalars(query.execution_options(yield_per=200)):
        yield battle
