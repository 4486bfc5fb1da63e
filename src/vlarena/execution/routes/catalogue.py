"""`GET /health` and `GET /models`: the service's state and the models it can run."""

import asyncio
from typing import Any

from fastapi import APIRouter

from vlarena import __version__
from vlarena.execution.routes.deps import Service

router = APIRouter()


@router.get("/health")
async def health(service: Service) -> dict[str, Any]:
    return {
        "status": "ok",
        "version": __version__,
        "episodes_admitted": service.admitted,
        "max_concurrent_episodes": service.settings.max_concurrent_episodes,
    }


@router.get("/models")
async def models(service: Service) -> list[dict[str, str]]:
    entries = await asyncio.to_thread(service.catalog.entries)  # may ask the inference server
    return [{"model_id": e.name, "kind": e.kind, "source": e.source} for e in entries]
