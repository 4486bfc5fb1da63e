"""What the battle and turn use cases share: settings, storage, the executor, limits, views."""

import random
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.client import ExecutionClient
from vlarena.arena.ratelimit import RateLimiter
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage.database import DbSession
from vlarena.arena.views import Views


@dataclass(frozen=True, eq=False)
class UseCase:
    """The collaborators of a battle-level use case."""

    settings: ArenaSettings
    db: async_sessionmaker[DbSession]
    client: ExecutionClient  # the execution service
    limiter: RateLimiter
    views: Views  # rows → responses
    rng: random.Random  # one stream for model draws and turn seeds


async def available_models(client: ExecutionClient, wanted: tuple[str, ...]) -> list[str]:
    """The models battles may draw: those configured (`wanted`; empty: every one) that the
    execution service runs, in the configured order."""
    served = await client.models()
    return [m for m in wanted if m in served] if wanted else list(served)
