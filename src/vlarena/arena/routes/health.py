"""GET /api/health."""

from typing import Any

from fastapi import APIRouter

from vlarena import __version__
from vlarena.arena.deps import Services
from vlarena.arena.usecases.export import EXPORT_KINDS

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
async def health(services: Services) -> dict[str, Any]:
    """Liveness, the execution service's breaker, and the turn queue."""
    breaker = services.client.breaker
    return {
        "status": "ok",
        "version": __version__,
        "execution": {"breaker": breaker.state, "breaker_opened": breaker.opened_count},
        "turns": services.runner.queue.counts,
        "export_kinds": list(EXPORT_KINDS),
    }
