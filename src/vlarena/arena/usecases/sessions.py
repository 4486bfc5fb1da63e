"""Anonymous sessions: a bearer token, stored only as its digest, owns battles and votes."""

import hashlib
import secrets

from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.ratelimit import RateLimiter
from vlarena.arena.schemas import SessionOut
from vlarena.arena.storage import crud
from vlarena.arena.storage.database import DbSession
from vlarena.errors import AuthError

CACHE = 10_000  # token digests remembered (sessions never change, so caching is safe)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, db: async_sessionmaker[DbSession], limiter: RateLimiter) -> None:
        self.db = db
        self.limiter = limiter
        self._known: dict[str, str] = {}  # token digest → session id (bounded, FIFO)

    async def create(self, ip: str) -> SessionOut:
        await self.limiter.hit("session", ip)
        token = secrets.token_urlsafe(32)
        async with self.db.begin() as s:
            session_id = crud.add_session(s, token_hash(token), ip)
        return SessionOut(session_id=session_id, token=token)

    async def authenticate(self, token: str | None) -> str:
        """The session id of a bearer token."""
        if not token:
            raise AuthError(
                "a session token is required: POST /api/sessions, then send "
                "'Authorization: Bearer <token>'"
            )
        digest = token_hash(token)
        session_id = self._known.get(digest)
        if session_id is None:
            async with self.db() as s:
                session_id = await crud.session_by_token(s, digest)
            if session_id is None:
                raise AuthError("unknown session token")
            if len(self._known) >= CACHE:
                self._known.pop(next(iter(self._known)))
            self._known[digest] = session_id
        return session_id
