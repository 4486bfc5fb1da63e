"""Model cards: what the execution service knows of each model, with its record here."""

import asyncio

from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.board import Board
from vlarena.arena.client import ExecutionClient
from vlarena.arena.schemas import ModelCardOut
from vlarena.arena.storage import results
from vlarena.arena.storage.database import DbSession
from vlarena.arena.usecases.context import available_models
from vlarena.execution.schemas import ModelCard


class Cards:
    def __init__(
        self,
        db: async_sessionmaker[DbSession],
        client: ExecutionClient,
        wanted: tuple[str, ...],
        board: Board,
    ) -> None:
        self.db = db
        self.client = client
        self.wanted = wanted  # the configured models ("": all the service runs)
        self.board = board

    async def listed(self) -> list[ModelCardOut]:
        """A card per model battles may draw, best rated first; a model whose card cannot be
        had right now still gets one, marked unavailable."""
        models = await available_models(self.client, self.wanted)
        cards = await asyncio.gather(*map(self.client.card, models))
        ratings = {r.model: r for r in (await self.board.get()).ratings}
        async with self.db() as s:
            latency = await results.latency(s)
        out = [
            ModelCardOut(
                **(card or _unknown(model)).model_dump(),
                available=card is not None,
                latency_ms=latency[model][0] if model in latency else None,
                latency_episodes=latency.get(model, (0.0, 0))[1],
                rating=ratings.get(model),
            )
            for model, card in zip(models, cards, strict=True)
        ]
        return sorted(out, key=_best_first)


def _unknown(model: str) -> ModelCard:
    """All there is of a model whose card cannot be had: its name."""
    return ModelCard(
        model_id=model, kind="unknown", family=None, parameters=None, version=None, trained=None
    )


def _best_first(card: ModelCardOut) -> tuple[bool, int, float, str]:
    """Rated models by rank then rating, then the unrated, each by name last."""
    rating = card.rating
    if rating is None:
        return (True, 0, 0.0, card.model_id)
    return (False, rating.rank, -rating.rating, card.model_id)
