"""The one place where the arena's errors become HTTP statuses with a JSON body."""

import logging

from vlarena.errors import (
    AuthError,
    BusyError,
    ConflictError,
    ExecutionFailedError,
    ExecutionUnavailableError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitedError,
    UnknownNameError,
    VLArenaError,
)

log = logging.getLogger(__name__)

STATUS: list[tuple[type[VLArenaError], int, str]] = [
    (InvalidRequestError, 422, "invalid_request"),
    (AuthError, 401, "unauthorized"),
    (ForbiddenError, 403, "forbidden"),
    (UnknownNameError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (RateLimitedError, 429, "rate_limited"),
    (ExecutionFailedError, 502, "execution_failed"),
    (ExecutionUnavailableError, 503, "execution_unavailable"),
    (BusyError, 503, "busy"),
]


def classify(exc: BaseException) -> tuple[int, str, str]:
    """HTTP status, error name and client-safe detail of any exception."""
    for kind, status, name in STATUS:
        if isinstance(exc, kind):
            return status, name, str(exc)
    log.error("unexpected error", exc_info=exc)
    return 500, "internal_error", "see the server log"
