"""The arena's services, wired once per app, and the FastAPI dependencies the routes take."""

import random
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from vlarena.arena.board import Board
from vlarena.arena.client import ExecutionClient
from vlarena.arena.ratelimit import RateLimiter
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage.database import DbSession, make_engine, session_factory
from vlarena.arena.usecases.battles import Battles
from vlarena.arena.usecases.brokered import BrokeredRunner
from vlarena.arena.usecases.cards import Cards
from vlarena.arena.usecases.runner import LocalRunner, TurnRunner
from vlarena.arena.usecases.scenes import Scenes
from vlarena.arena.usecases.sessions import Sessions
from vlarena.arena.usecases.turns import Turns
from vlarena.arena.usecases.votes import Votes
from vlarena.arena.views import Views
from vlarena.broker import QueueSettings
from vlarena.httpjson import ErrorBody

# The error statuses the API documents (each with the JSON error body).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429, 502, 503)
}


@dataclass(frozen=True)
class Arena:
    """Everything behind /api, built from the settings; nothing connects until used."""

    settings: ArenaSettings
    engine: AsyncEngine
    db: async_sessionmaker[DbSession]
    client: ExecutionClient
    runner: TurnRunner
    sessions: Sessions
    battles: Battles
    turns: Turns
    votes: Votes
    scenes: Scenes
    board: Board
    cards: Cards

    @classmethod
    def build(cls, settings: ArenaSettings, queue: QueueSettings | None = None) -> "Arena":
        engine = make_engine(settings.database_url)
        db = session_factory(engine)
        client = ExecutionClient(settings)
        rates = {
            "session": settings.session_rate,
            "battle": settings.battle_rate,
            "turn": settings.turn_rate,
            "vote": settings.vote_rate,
        }
        limiter = RateLimiter(settings.rate_limit_storage, rates)
        rng = random.Random(settings.seed)  # one stream: model draws and turn seeds
        runner: TurnRunner = (
            BrokeredRunner(settings, queue, db)
            if queue is not None and queue.url
            else LocalRunner(settings, db, client)
        )
        views = Views(settings.max_turns_per_battle, runner)
        shared = (settings, db, client, limiter, views, rng)
        board = Board(
            db,
            settings.bootstrap_rounds,
            settings.leaderboard_ttl_s,
            settings.scene_ids,
            settings.provisional_votes,
        )
        return cls(
            settings=settings,
            engine=engine,
            db=db,
            client=client,
            runner=runner,
            sessions=Sessions(db, limiter),
            battles=Battles(*shared, board),
            turns=Turns(*shared, runner),
            votes=Votes(db, limiter, views),
            scenes=Scenes(client, settings.scene_ids),
            board=board,
            cards=Cards(db, client, settings.model_ids, board),
        )

    async def close(self) -> None:
        await self.runner.close()
        await self.board.close()
        await self.client.aclose()
        await self.engine.dispose()


def arena(request: Request) -> Arena:
    services: Arena = request.app.state.arena
    return services


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bearer(authorization: Annotated[str | None, Header()] = None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


Services = Annotated[Arena, Depends(arena)]
Token = Annotated[str | None, Depends(bearer)]
ClientIp = Annotated[str, Depends(client_ip)]


async def session_of(services: Services, token: Token) -> str:
    return await services.sessions.authenticate(token)


Session = Annotated[str, Depends(session_of)]
BattleId = Annotated[str, Path(min_length=1, max_length=32)]
