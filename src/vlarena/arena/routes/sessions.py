"""POST /api/sessions."""

from fastapi import APIRouter

from vlarena.arena.deps import ERRORS, ClientIp, Services
from vlarena.arena.schemas import SessionOut

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


@router.post("", status_code=201, response_model=SessionOut, responses=ERRORS)
async def new_session(services: Services, ip: ClientIp) -> SessionOut:
    """An anonymous session: its token owns the battles and votes made with it."""
    return await services.sessions.create(ip)
