"""Background episodes, for long ones: `POST /episodes` starts one, `GET /episodes/{id}` polls."""

from fastapi import APIRouter

from vlarena.execution.routes.deps import ERRORS, Service
from vlarena.execution.schemas import EpisodeStatus, ExecuteRequest
from vlarena.execution.views import job_view

router = APIRouter(prefix="/episodes")


@router.post("", status_code=202, responses=ERRORS)
async def start_episode(request: ExecuteRequest, service: Service) -> dict[str, str]:
    """Start an episode in the background (for long ones); poll GET /episodes/{id}."""
    job_id = service.submit(await service.admit(request))
    return {"episode_id": job_id, "status_url": f"/episodes/{job_id}"}


@router.get("/{episode_id}", responses=ERRORS)
async def episode_status(episode_id: str, service: Service) -> EpisodeStatus:
    return job_view(episode_id, service.jobs.get(episode_id))
