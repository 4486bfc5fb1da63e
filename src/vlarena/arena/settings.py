"""Runtime settings of the arena backend, from VLA_ARENA_* environment variables.

Two names are the execution service's contract names, unprefixed: VLA_SERVER_URL and
VLA_REQUEST_TIMEOUT (where the service is, how long one call may take).
"""

from pathlib import Path

from limits import parse
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vlarena.arena.ranking import PROVISIONAL_VOTES
from vlarena.httpjson import TrustedProxies

WEB_DIR = Path(__file__).with_name("web")


def _names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))


class ArenaSettings(BaseSettings):
    """Every knob of `vlarena arena`; each field is the env var VLA_ARENA_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="VLA_ARENA_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"  # bind address
    port: int = Field(8000, ge=0, le=65535)
    trusted_proxies: TrustedProxies = ""  # IPs/CIDRs whose X-Forwarded-For is believed
    database_url: str = "sqlite+aiosqlite:///arena.db"  # or postgresql+asyncpg://user@host/db
    # The execution service (its contract's variable names); several: comma-separated URLs.
    server_url: str = Field(
        "http://127.0.0.1:8001", validation_alias=AliasChoices("VLA_SERVER_URL", "server_url")
    )
    request_timeout_s: float = Field(
        120.0, gt=0, validation_alias=AliasChoices("VLA_REQUEST_TIMEOUT", "request_timeout_s")
    )
    retry_attempts: int = Field(4, ge=1, le=20)  # tries per call on transient failures
    retry_initial_s: float = Field(0.2, ge=0)  # first backoff; doubles, plus jitter
    retry_max_s: float = Field(5.0, ge=0)  # longest single backoff
    breaker_failures: int = Field(5, ge=1)  # consecutive failed calls that open the breaker
    breaker_reset_s: float = Field(10.0, gt=0)  # open this long, then one half-open probe
    # What battles run.
    models: str = ""  # comma-separated model ids; "" = every model the service lists
    scenes: str = "table,bin"  # scenes a user may choose
    max_steps: int = Field(60, ge=1, le=200)  # step budget of each episode
    max_instruction_chars: int = Field(200, ge=1, le=500)
    max_turns_per_battle: int = Field(5, ge=1, le=100)
    # Load and abuse.
    max_running_turns: int = Field(1, ge=1, le=64)  # turns (two episodes each) run at once
    max_queued_turns: int = Field(20, ge=0, le=10_000)  # waiting beyond those, then 503
    rate_limit_storage: str = "async+memory://"  # or async+redis://127.0.0.1:6379 (shared)
    battle_rate: str = "10/minute"  # battle creations per session and per IP (limits syntax)
    turn_rate: str = "20/minute"  # turn creations per session and per IP
    vote_rate: str = "30/minute"  # votes per session and per IP
    session_rate: str = "30/minute"  # new sessions per IP
    admin_token: SecretStr | None = None  # if set, /api/export needs it as a bearer token
    # Leaderboard.
    bootstrap_rounds: int = Field(1000, ge=10, le=100_000)
    provisional_votes: int = Field(PROVISIONAL_VOTES, ge=1, le=100_000)  # fewer: provisional
    leaderboard_ttl_s: float = Field(2.0, ge=0)  # recompute at most this often
    seed: int | None = None  # fixes model picking and seeds (tests); None: random
    web_dir: Path = WEB_DIR  # the built web UI served at / (make install builds it)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("battle_rate", "turn_rate", "vote_rate", "session_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate such as 10/minute") from None
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> "ArenaSettings":
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError("VLA_ARENA_RETRY_INITIAL_S exceeds VLA_ARENA_RETRY_MAX_S")
        if not self.scene_ids:
            raise ValueError("VLA_ARENA_SCENES names no scene")
        if not self.server_urls or not all(
            u.startswith(("http://", "https://")) for u in self.server_urls
        ):
            raise ValueError("VLA_SERVER_URL must be one or more comma-separated http(s) URLs")
        return self

    @property
    def server_urls(self) -> tuple[str, ...]:
        return tuple(url.rstrip("/") for url in _names(self.server_url))

    @property
    def model_ids(self) -> tuple[str, ...]:
        return _names(self.models)

    @property
    def scene_ids(self) -> tuple[str, ...]:
        return _names(self.scenes)
