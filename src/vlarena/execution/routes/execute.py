"""`POST /execute`: run one episode and answer with it; `POST /execute/check`: only validate."""

from fastapi import APIRouter

from vlarena.execution.routes.deps import ERRORS, Service
from vlarena.execution.schemas import ExecuteRequest, ExecuteResponse
from vlarena.execution.views import episode_view

router = APIRouter(prefix="/execute")


@router.post("", responses=ERRORS)
async def execute(request: ExecuteRequest, service: Service) -> ExecuteResponse:
    """Run one episode and return its actions, states, timing and outcome."""
    admitted = await service.admit(request)
    return episode_view(await service.run(admitted))


@router.post("/check", responses=ERRORS)
async def check(request: ExecuteRequest, service: Service) -> dict[str, int]:
    """Validate an /execute request without running it (the error it would get, or 200)."""
    return {"max_steps": (await service.check(request)).max_steps}
