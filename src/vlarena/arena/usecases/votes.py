"""Votes: one per battle, by its owner, once a turn has finished; the vote reveals the models."""

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.ratelimit import RateLimiter
from vlarena.arena.schemas import BattleOut, VoteCreate
from vlarena.arena.storage import crud
from vlarena.arena.storage.database import DbSession
from vlarena.arena.usecases.rules import check_can_vote, check_owner
from vlarena.arena.views import Views
from vlarena.errors import ConflictError


class Votes:
    def __init__(
        self, db: async_sessionmaker[DbSession], limiter: RateLimiter, views: Views
    ) -> None:
        self.db = db
        self.limiter = limiter
        self.views = views

    async def cast(self, session_id: str, battle_id: str, vote: VoteCreate, ip: str) -> BattleOut:
        """Checked under the battle's lock, so a concurrent turn or vote cannot slip past."""
        await self.limiter.hit("vote", session_id, ip)
        try:
            async with self.db.begin() as s:
                battle = await crud.get_battle(s, battle_id, lock=True)
                check_owner(battle, session_id)
                check_can_vote(battle)
                crud.add_vote(s, battle, session_id, vote)
        except IntegrityError:  # a concurrent vote committed first
            raise ConflictError("this battle already has a vote") from None
        return self.views.battle(battle)
