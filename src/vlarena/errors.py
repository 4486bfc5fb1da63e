"""The error catalogue: every domain error with its wire name, gRPC code and HTTP status.

Servers encode a domain error with `error.wire`; clients decode what they receive back into the
same domain error with `from_wire`, so no layer reads another transport's codes. Errors a caller
may retry derive from `RetryLaterError` and carry `retry_after_s`.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Self

from pydantic import ValidationError

ECHO_CHARS = 100  # a message quotes at most this much of a value a client sent


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters (the last one an ellipsis) if longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """How a message quotes a value a client sent: its repr, clipped to `limit` characters
    (a client string of any length must not make an error message too long to send)."""
    if isinstance(value, str | bytes):
        value = value[:limit]  # the repr of a long value is not built only to be cut
    return clip(repr(value), limit)


@dataclass(frozen=True)
class Wire:
    """How one kind of error travels."""

    name: str  # in JSON error bodies and in the gRPC `error-name` trailer
    grpc_code: str  # a grpc.StatusCode name
    http_status: int


class VLArenaError(Exception):
    """Base class of every error VLArena raises on purpose (unexpected ones become this)."""

    wire: ClassVar[Wire] = Wire("internal_error", "INTERNAL", 500)

    @property
    def retry_after_s(self) -> float | None:
        """Seconds after which a retry may succeed; None: retrying will not help."""
        return None

    @classmethod
    def from_detail(cls, detail: str, retry_after_s: float | None = None) -> Self:
        """The error as a client rebuilds it from a wire message."""
        return cls(detail)


class InvalidRequestError(VLArenaError, ValueError):
    """A request is malformed or not acceptable (what to fix is in the message)."""

    wire = Wire("invalid_request", "INVALID_ARGUMENT", 422)


class InvalidObservationError(InvalidRequestError):
    """An observation is malformed or does not match what the model expects."""


class ConfigError(VLArenaError, ValueError):
    """A configuration value is invalid."""

    wire = Wire("invalid_config", "INVALID_ARGUMENT", 422)


class CheckpointError(VLArenaError):
    """A checkpoint directory is missing, incomplete or inconsistent."""

    wire = Wire("checkpoint_error", "FAILED_PRECONDITION", 500)


class UnknownNameError(VLArenaError, KeyError):
    """A name (policy type, preset, model, scene, battle) is not one of the valid ones."""

    wire = Wire("not_found", "NOT_FOUND", 404)

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"unknown {kind} {echo(name)}; valid: {', '.join(self.valid) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Picklable: raised in a worker process, re-raised in the parent."""
        if not self.kind:  # rebuilt from a peer's message: its text is all there is
            return type(self).from_detail, (str(self),)
        return type(self), (self.kind, self.name, self.valid)

    @classmethod
    def from_detail(cls, detail: str, retry_after_s: float | None = None) -> Self:
        error = cls.__new__(cls)
        error.kind, error.name, error.valid = "", "", []
        Exception.__init__(error, detail)
        return error


class ModelLoadError(VLArenaError):
    """A model exists in the catalog but could not be loaded."""

    wire = Wire("model_loading_failed", "INTERNAL", 500)


class PolicyOutputError(VLArenaError):
    """A policy, or the inference server behind it, answered with something unusable."""

    wire = Wire("inference_failed", "INTERNAL", 502)


class NonFiniteActionsError(PolicyOutputError):
    """A policy produced NaN or infinite actions (or confidence): a model fault, never sent."""


class AuthError(VLArenaError):
    """A request lacks a valid credential (a token)."""

    wire = Wire("unauthorized", "UNAUTHENTICATED", 401)


class ForbiddenError(VLArenaError):
    """The credential is valid but does not own what it asks to change."""

    wire = Wire("forbidden", "PERMISSION_DENIED", 403)


class ConflictError(VLArenaError):
    """The request conflicts with stored state (a second vote, a reused idempotency key)."""

    wire = Wire("conflict", "ABORTED", 409)


class ExecutionFailedError(VLArenaError):
    """The execution service answered, but with a failure that retrying will not fix."""

    wire = Wire("execution_failed", "INTERNAL", 502)


class RetryLaterError(VLArenaError):
    """A limit or an unavailable dependency; the caller may retry after `retry_after_s`."""

    wire = Wire("unavailable", "UNAVAILABLE", 503)
    default_retry_after_s: ClassVar[float] = 1.0

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self._retry_after_s = self.default_retry_after_s if retry_after_s is None else retry_after_s

    @property
    def retry_after_s(self) -> float:
        return self._retry_after_s

    def __reduce__(self) -> tuple[type, tuple[str, float]]:
        return type(self), (str(self), self._retry_after_s)

    @classmethod
    def from_detail(cls, detail: str, retry_after_s: float | None = None) -> Self:
        return cls(detail, retry_after_s)


class QueueFullError(RetryLaterError):
    """The inference server's request queue is full."""

    wire = Wire("queue_full", "RESOURCE_EXHAUSTED", 503)


class DeadlineExceededError(RetryLaterError):
    """The request's deadline passed before it could be answered."""

    wire = Wire("deadline_exceeded", "DEADLINE_EXCEEDED", 504)


class UnavailableError(RetryLaterError):
    """The inference server is warming up, shutting down or unreachable."""

    wire = Wire("inference_unavailable", "UNAVAILABLE", 503)


class SaturatedError(RetryLaterError):
    """Every episode slot and waiting place of the execution service is taken."""

    wire = Wire("saturated", "RESOURCE_EXHAUSTED", 503)
    default_retry_after_s = 10.0


class RateLimitedError(RetryLaterError):
    """A caller made too many requests in its window."""

    wire = Wire("rate_limited", "RESOURCE_EXHAUSTED", 429)


class ExecutionUnavailableError(RetryLaterError):
    """The execution service is down, failing, or its circuit breaker is open."""

    wire = Wire("execution_unavailable", "UNAVAILABLE", 503)
    default_retry_after_s = 10.0


class BusyError(RetryLaterError):
    """Every running and queued battle place is taken."""

    wire = Wire("busy", "RESOURCE_EXHAUSTED", 503)
    default_retry_after_s = 10.0


class QueueUnavailableError(RetryLaterError):
    """The durable turn queue (the broker) cannot be reached."""

    wire = Wire("queue_unavailable", "UNAVAILABLE", 503)
    default_retry_after_s = 5.0


def remote_failure(exc: VLArenaError, peer: str) -> VLArenaError:
    """A remote policy's failure as its caller sees it: request errors and retryable ones keep
    their kind; anything else is the policy's PolicyOutputError, naming the peer (`peer`)."""
    if isinstance(
        exc, InvalidRequestError | UnknownNameError | RetryLaterError | PolicyOutputError
    ):
        return exc
    return PolicyOutputError(f"{peer} failed: {exc}")


# Decoding: by wire name first; a peer that sends none (a foreign server, a proxy, the transport
# itself) is decoded by its bare status code.
CATALOGUE: tuple[type[VLArenaError], ...] = (
    InvalidRequestError,
    ConfigError,
    UnknownNameError,
    CheckpointError,
    ModelLoadError,
    PolicyOutputError,
    AuthError,
    ForbiddenError,
    ConflictError,
    ExecutionFailedError,
    QueueFullError,
    DeadlineExceededError,
    UnavailableError,
    SaturatedError,
    RateLimitedError,
    ExecutionUnavailableError,
    BusyError,
    QueueUnavailableError,
    RetryLaterError,
    VLArenaError,
)
_BY_NAME = {kind.wire.name: kind for kind in CATALOGUE}
_BY_GRPC: dict[str, type[VLArenaError]] = {
    **{
        kind.wire.grpc_code: kind
        for kind in (
            InvalidRequestError,
            UnknownNameError,
            DeadlineExceededError,
            UnavailableError,
            AuthError,
            ForbiddenError,
            ConflictError,
        )
    },
    "RESOURCE_EXHAUSTED": RetryLaterError,  # some limit, not necessarily a queue
}
_BY_HTTP: dict[int, type[VLArenaError]] = {
    **{
        kind.wire.http_status: kind
        for kind in (
            AuthError,
            ForbiddenError,
            UnknownNameError,
            ConflictError,
            InvalidRequestError,
            RateLimitedError,
            DeadlineExceededError,
        )
    },
    502: UnavailableError,  # a proxy's bad gateway: the service behind it is unreachable
    503: UnavailableError,
}


def from_wire(
    name: str | None,
    detail: str,
    retry_after_s: float | None = None,
    *,
    grpc_code: str | None = None,
    http_status: int | None = None,
) -> VLArenaError:
    """The domain error a peer sent: by its wire name, else by its transport's status code."""
    kind = _BY_NAME.get(name or "")
    if kind is None and grpc_code is not None:
        kind = _BY_GRPC.get(grpc_code)
    if kind is None and http_status is not None:
        kind = _BY_HTTP.get(http_status)
        if kind is None and 400 <= http_status < 500:
            kind = InvalidRequestError
    return (kind or VLArenaError).from_detail(detail, retry_after_s)


def describe_validation(exc: ValidationError) -> str:
    """One line per pydantic problem, `field.path: message`, without echoing the input."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'value'}: {err['msg']}"
        for err in exc.errors()
    )
