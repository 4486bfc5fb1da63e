"""Battles, their turns, votes and episode replays."""

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response

from vlarena.arena.deps import ERRORS, BattleId, ClientIp, Services, Session
from vlarena.arena.schemas import BattleCreate, BattleOut, Replay, TurnCreate, VoteCreate
from vlarena.arena.usecases.turns import TurnRequest

router = APIRouter(prefix="/api/battles", tags=["battles"])
IdempotencyKey = Annotated[
    str | None,
    Header(max_length=200, description="Retrying with the same key never adds a second turn."),
]


@router.post("", status_code=201, response_model=BattleOut, responses=ERRORS)
async def new_battle(
    body: BattleCreate, session: Session, services: Services, ip: ClientIp
) -> BattleOut:
    """Draw two hidden models (favouring the least-battled) for a scene."""
    return await services.battles.create(session, body.scene_id, ip)


@router.get("/{battle_id}", response_model=BattleOut, responses=ERRORS)
async def get_battle(battle_id: BattleId, services: Services) -> BattleOut:
    """A battle's status, turns and queue positions; models only after the vote."""
    return await services.battles.get(battle_id)


@router.post("/{battle_id}/turns", status_code=202, response_model=BattleOut, responses=ERRORS)
async def new_turn(
    battle_id: BattleId,
    body: TurnCreate,
    session: Session,
    services: Services,
    ip: ClientIp,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> BattleOut:
    """Run both models on one instruction, seed and start state (202: queued).

    A repeat with the same Idempotency-Key answers 200 with the battle and adds nothing.
    """
    limit = services.settings.max_instruction_chars
    request = TurnRequest.admit(session, battle_id, body.instruction, idempotency_key, limit)
    battle, created = await services.turns.add(request, ip)
    if not created:
        response.status_code = 200
    return battle


@router.post("/{battle_id}/vote", response_model=BattleOut, responses=ERRORS)
async def vote(
    battle_id: BattleId, body: VoteCreate, session: Session, services: Services, ip: ClientIp
) -> BattleOut:
    """One vote per battle, with optional 0-100 progress scores per side and a short reason;
    the answer reveals both models and their sim success."""
    return await services.votes.cast(session, battle_id, body, ip)


@router.get("/{battle_id}/turns/{number}/episodes/{side}", response_model=Replay, responses=ERRORS)
async def replay(
    battle_id: BattleId,
    number: Annotated[int, Path(ge=1, le=1000)],
    side: Annotated[str, Path(pattern="^[ab]$")],
    services: Services,
) -> Replay:
    """One episode's joint trajectory for replay in the browser."""
    return await services.battles.replay(battle_id, number, side)
