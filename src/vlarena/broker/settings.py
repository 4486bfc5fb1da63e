"""Runtime settings of the turn queue, from VLA_QUEUE_* environment variables; the arena and
the execution workers read the same ones."""

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class QueueSettings(BaseSettings):
    """Where the turn queue is and how leases behave; each field is VLA_QUEUE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="VLA_QUEUE_", extra="ignore", frozen=True)

    url: str | None = None  # redis://HOST:6379/0; None: turns run in the arena's own process
    prefix: str = Field("vlarena", min_length=1, max_length=64)  # key prefix (several stacks)
    lease_s: float = Field(30.0, gt=0, le=3600)  # a worker silent this long loses its turn
    max_attempts: int = Field(3, ge=1, le=20)  # leases of one turn before it is failed
    sweep_s: float = Field(15.0, gt=0)  # how often the arena re-queues turns the broker lost
    poll_s: float = Field(0.5, gt=0, le=10)  # queue places and progress, refreshed this often

    @field_validator("url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease_s * 1000))
