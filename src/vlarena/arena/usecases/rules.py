"""What a battle's state allows: who may change it, when a turn may be added or a vote cast."""

from vlarena.arena.storage.crud import ACTIVE
from vlarena.arena.storage.tables import BattleRow
from vlarena.errors import ConflictError, ForbiddenError


def check_owner(battle: BattleRow, session_id: str) -> None:
    if battle.session_id != session_id:
        raise ForbiddenError("this battle belongs to another session")


def check_can_add(battle: BattleRow, max_turns: int) -> None:
    if battle.vote is not None:
        raise ConflictError("this battle has been voted on; start a new battle")
    if any(t.status in ACTIVE for t in battle.turns):
        raise ConflictError("a turn of this battle is still running; wait for it")
    if len(battle.turns) >= max_turns:
        raise ConflictError(f"a battle has at most {max_turns} turns; vote on it")


def check_can_vote(battle: BattleRow) -> None:
    if battle.vote is not None:
        raise ConflictError("this battle already has a vote")
    if any(t.status in ACTIVE for t in battle.turns):
        raise ConflictError("a turn of this battle is still running; vote when it ends")
    if not any(t.status == "done" for t in battle.turns):
        raise ConflictError("nothing to vote on yet: no turn of this battle has finished")
