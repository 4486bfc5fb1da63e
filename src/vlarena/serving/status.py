"""The one place where domain errors become gRPC status codes."""

import grpc

from vlarena.errors import (
    CheckpointError,
    ConfigError,
    DeadlineExceededError,
    InvalidObservationError,
    QueueFullError,
    UnavailableError,
    UnknownNameError,
    VLArenaError,
)

_CODES: list[tuple[type[VLArenaError], grpc.StatusCode]] = [
    (InvalidObservationError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownNameError, grpc.StatusCode.NOT_FOUND),
    (QueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (CheckpointError, grpc.StatusCode.FAILED_PRECONDITION),
]


def status_for(exc: VLArenaError) -> grpc.StatusCode:
    """The gRPC status of a domain error (INTERNAL for one not listed)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL
