"""GET /api/health."""

from typing import Any

from fastapi import APIRouter

from vlarena import __version__
from vlarena.arena.deps import Services
from vlarena.arena.usecases.export import EXPORT_KINDS

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
async def health(services: Services) -> dict[str, Any]:
    """Liveness, the execution services' breakers, and the turn queue."""
    targets = services.client.targets
    return {
        "status": "ok",
        "version": __version__,
        "execution": [  # in VLA_SERVER_URL's order (not the URLs: they may hold secrets)
            {"breaker": t.breaker.state, "breaker_opened": t.breaker.opened_count} for t in targets
        ],
        "turns": services.runner.queue.counts,
        "export_kinds": list(EXPORT_KINDS),
    }
