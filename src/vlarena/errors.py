"""Domain errors. Each transport maps these to its own status codes in one place."""

from collections.abc import Iterable

from pydantic import ValidationError


class VLArenaError(Exception):
    """Base class of every error VLArena raises on purpose."""


class InvalidObservationError(VLArenaError, ValueError):
    """An observation is malformed or does not match what the model expects."""


class ConfigError(VLArenaError, ValueError):
    """A configuration value is invalid."""


class CheckpointError(VLArenaError):
    """A checkpoint directory is missing, incomplete or inconsistent."""


class UnknownNameError(VLArenaError, KeyError):
    """A name (policy type, preset, loaded model, device) is not one of the valid ones."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])

    def __reduce__(self) -> tuple[type, tuple[str, str, list[str]]]:
        """Picklable: raised in a worker process, re-raised in the parent."""
        return type(self), (self.kind, self.name, self.valid)


class QueueFullError(VLArenaError):
    """The request queue is full; the caller should back off and retry."""


class DeadlineExceededError(VLArenaError):
    """The request's deadline passed before it could be answered."""


class UnavailableError(VLArenaError):
    """The service is not ready (warming up) or is shutting down."""


class SaturatedError(VLArenaError):
    """Every episode slot and waiting place is taken; retry later."""


class PolicyOutputError(VLArenaError):
    """A policy answered with something unusable (wrong shape, NaN, empty)."""


class ModelLoadError(VLArenaError):
    """A model exists in the catalog but could not be loaded."""


class InvalidRequestError(VLArenaError, ValueError):
    """A request is well-formed but not acceptable (an instruction the scene cannot run)."""


class AuthError(VLArenaError):
    """A request lacks a valid credential (a session token)."""


class ForbiddenError(VLArenaError):
    """The credential is valid but does not own what it asks to change."""


class ConflictError(VLArenaError):
    """The request conflicts with stored state (a second vote, a reused idempotency key)."""


class ExecutionFailedError(VLArenaError):
    """The execution service answered, but with a failure that retrying will not fix."""


class RetryLaterError(VLArenaError):
    """A limit or an unavailable dependency; the caller may retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimitedError(RetryLaterError):
    """A caller made too many requests in its window."""


class ExecutionUnavailableError(RetryLaterError):
    """The execution service is down, failing, or its circuit breaker is open."""


class BusyError(RetryLaterError):
    """Every running and queued battle place is taken."""


def describe_validation(exc: ValidationError) -> str:
    """One line per pydantic problem, `field.path: message`, without echoing the input."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'value'}: {err['msg']}"
        for err in exc.errors()
    )
