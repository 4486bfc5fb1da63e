"""`GET /health`, `GET /models` and `GET /models/{model_id}/card`: the service's state, the
models it can run, and what is known of each."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from vlarena import __version__
from vlarena.execution.routes.deps import ERRORS, Service
from vlarena.execution.schemas import ModelCard
from vlarena.execution.worker import TurnWorker
from vlarena.types import MAX_NAME_CHARS

router = APIRouter()


@router.get("/health")
async def health(service: Service, request: Request) -> dict[str, Any]:
    worker: TurnWorker | None = request.app.state.worker
    return {
        "status": "ok",
        "version": __version__,
        "episodes_admitted": service.admitted,
        "max_concurrent_episodes": service.settings.max_concurrent_episodes,
        "queue_worker": None if worker is None else {"name": worker.name, "slots": worker.slots},
    }


@router.get("/models")
async def models(service: Service) -> list[dict[str, str]]:
    entries = await asyncio.to_thread(service.catalog.entries)  # may ask the inference server
    return [{"model_id": e.name, "kind": e.kind, "source": e.source} for e in entries]


@router.get("/models/{model_id:path}/card", response_model=ModelCard, responses=ERRORS)
async def card(
    model_id: Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)], service: Service
) -> ModelCard:
    """Family, size, training summary, offline evaluation, license and source of a model."""
    return await asyncio.to_thread(service.catalog.card, model_id)  # may load it or ask a server
