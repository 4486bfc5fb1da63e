"""The leaderboard's and the export's queries: voted battles only (open ones stay hidden)."""

from collections.abc import AsyncIterator

from sqlalchemy import case, func, select
from sqlalchemy.orm import selectinload

from vlarena.arena.ranking import Vote
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import BattleRow, EpisodeRow, TurnRow, VoteRow

WON = func.sum(case((EpisodeRow.success.is_(True), 1), else_=0))


async def vote_count(s: DbSession) -> int:
    return int(await s.scalar(select(func.count()).select_from(VoteRow)) or 0)


async def votes(s: DbSession) -> list[Vote]:
    """Every vote with its battle's models, in the order they were cast."""
    rows = await s.execute(
        select(BattleRow.model_a, BattleRow.model_b, VoteRow.choice)
        .join(VoteRow, VoteRow.battle_id == BattleRow.id)
        .order_by(VoteRow.created_at, VoteRow.id)
    )
    return [Vote(a, b, c) for a, b, c in rows]


async def sim_success(s: DbSession) -> dict[str, tuple[int, int]]:
    """Per model, over voted battles: successful episodes, episodes with a task."""
    rows = await s.execute(
        select(EpisodeRow.model_id, WON, func.count())
        .join(TurnRow, EpisodeRow.turn_id == TurnRow.id)
        .join(VoteRow, VoteRow.battle_id == TurnRow.battle_id)
        .where(EpisodeRow.success.is_not(None), TurnRow.status == "done")
        .group_by(EpisodeRow.model_id)
    )
    return {model: (int(wins or 0), int(n)) for model, wins, n in rows}


async def side_successes(s: DbSession) -> dict[str, tuple[str, dict[str, int]]]:
    """Per battle with an a/b vote: the choice, and sim successes per side over done turns."""
    per_side = (
        select(TurnRow.battle_id, EpisodeRow.side, WON.label("wins"))
        .join(TurnRow, EpisodeRow.turn_id == TurnRow.id)
        .where(TurnRow.status == "done")
        .group_by(TurnRow.battle_id, EpisodeRow.side)
    ).subquery()
    rows = await s.execute(
        select(VoteRow.battle_id, VoteRow.choice, per_side.c.side, per_side.c.wins)
        .join(per_side, per_side.c.battle_id == VoteRow.battle_id)
        .where(VoteRow.choice.in_(("a", "b")))
    )
    battles: dict[str, tuple[str, dict[str, int]]] = {}
    for battle_id, choice, side, wins in rows:
        battles.setdefault(battle_id, (choice, {}))[1][side] = int(wins or 0)
    return battles


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
