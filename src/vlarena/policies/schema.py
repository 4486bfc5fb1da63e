"""Strict JSON encoding of the frozen dataclasses a checkpoint stores."""

from typing import Generic, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from vlarena.errors import ConfigError, describe_validation

T = TypeVar("T")

# No unknown keys, no coercion ("3" or true for an int), no NaN/inf.
STRICT_JSON = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class JsonCodec(Generic[T]):
    """Dumps a dataclass to JSON bytes and parses it back, validating every field."""

    def __init__(self, cls: type[T], what: str) -> None:
        self._adapter = TypeAdapter(cls)
        self._what = what

    def dumps(self, value: T) -> bytes:
        return self._adapter.dump_json(value, indent=2) + b"\n"

    def loads(self, data: bytes) -> T:
        """Parse, raising ConfigError with every problem listed (never the input echoed)."""
        try:
            return self._adapter.validate_json(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid {self._what}: {describe_validation(exc)}") from None
