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


def describe_validation(exc: ValidationError) -> str:
    """One line per pydantic problem, `field.path: message`, without echoing the input."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'value'}: {err['msg']}"
        for err in exc.errors()
    )
