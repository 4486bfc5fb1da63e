"""Runtime settings of the execution service, from VLA_EXEC_* environment variables."""

from dataclasses import replace
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from vlarena.errors import UnknownNameError
from vlarena.httpjson import TrustedProxies
from vlarena.policies.shipped import shipped_checkpoints
from vlarena.policies.specs import REMOTE_PREFIXES, ModelSpec, parse_spec
from vlarena.serving.openpi.profiles import get_profile
from vlarena.sim.runner import MAX_STEPS_CAP
from vlarena.types import MAX_NAME_CHARS


class RemoteModel(BaseModel):
    """A policy its owner serves, entered as a contestant: where it is and how to talk to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)  # the name it is listed under
    url: str  # grpc://HOST:PORT[/MODEL] (our gRPC) or ws://HOST:PORT[/PATH] (openpi protocol)
    token: SecretStr | None = None  # its bearer / Api-Key token, if it needs one
    profile: str | None = None  # openpi servers: observation profile (default: the server's)
    timeout_s: float = Field(10.0, gt=0, le=120)  # to connect, and per action chunk
    license: str | None = Field(None, max_length=100)  # shown on its model card
    source: str | None = Field(None, max_length=500)  # its homepage or repository, ditto

    @field_validator("url")
    @classmethod
    def _remote_url(cls, value: str) -> str:
        if not value.startswith(REMOTE_PREFIXES):
            raise ValueError("must be grpc://HOST:PORT[/MODEL] or ws://HOST:PORT[/PATH]")
        parse_spec(value)  # ConfigError (a ValueError) says what is wrong with it
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                get_profile(value)
            except UnknownNameError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def spec(self) -> ModelSpec:
        """The model spec its URL and profile make."""
        return replace(parse_spec(self.url), profile=self.profile or "")


class ExecutionSettings(BaseSettings):
    """Every knob of `vlarena execute`; each field is the env var VLA_EXEC_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="VLA_EXEC_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"  # bind address
    port: int = Field(8001, ge=0, le=65535)
    trusted_proxies: TrustedProxies = ""  # IPs/CIDRs whose X-Forwarded-For is believed
    model_paths: str = ""  # comma-separated checkpoint directories served by name
    shipped_models: bool = True  # also serve the checkpoints shipped in the package
    presets: str = "vla-flow:small,vla-ar:small"  # random-weight natives (type:preset), "" for none
    # The gRPC inference server for more models: host:port, or its replicas, load-balanced
    # round robin: ipv4:HOST:PORT,HOST:PORT or dns:///NAME:PORT (every address of the name).
    inference_target: str | None = None
    inference_token: SecretStr | None = None  # its bearer token, if it needs one
    # Remote policy servers as contestants (RemoteModel fields), as a JSON list, from this
    # variable and/or a JSON file; names must differ from every other model's.
    remote_models: list[RemoteModel] = []
    remote_models_file: Path | None = None
    device: str = "cpu"
    max_concurrent_episodes: int = Field(2, ge=1, le=64)  # episodes simulated at once
    max_waiting_episodes: int = Field(4, ge=0, le=1000)  # queued beyond those, then 503
    default_max_steps: int = Field(50, ge=1)
    max_steps_cap: int = Field(200, ge=1, le=MAX_STEPS_CAP)
    horizon: int = Field(1, ge=1)  # actions of each chunk run before re-planning (at most all)
    ensemble: bool = True  # each step runs the mean of the newest chunks' predictions for it
    stored_async_episodes: int = Field(256, ge=1)  # finished async episodes kept for polling

    @field_validator("presets")
    @classmethod
    def _preset_pairs(cls, value: str) -> str:
        for item in filter(None, (p.strip() for p in value.split(","))):
            if item.count(":") != 1:
                raise ValueError(f"preset {item!r} must look like TYPE:PRESET, e.g. vla-flow:small")
        return value

    @model_validator(mode="after")
    def _remote_file(self) -> "ExecutionSettings":
        if self.remote_models_file is not None:
            try:
                text = self.remote_models_file.read_text()
            except OSError as exc:
                raise ValueError(f"cannot read VLA_EXEC_REMOTE_MODELS_FILE: {exc}") from None
            listed = TypeAdapter(list[RemoteModel]).validate_json(text)
            object.__setattr__(self, "remote_models", [*self.remote_models, *listed])
        names = [m.name for m in self.remote_models]
        if len(set(names)) != len(names):
            raise ValueError("two remote models have the same name")
        return self

    @model_validator(mode="after")
    def _default_within_cap(self) -> "ExecutionSettings":
        if self.default_max_steps > self.max_steps_cap:
            raise ValueError("VLA_EXEC_DEFAULT_MAX_STEPS exceeds VLA_EXEC_MAX_STEPS_CAP")
        return self

    @property
    def checkpoints(self) -> list[Path]:
        listed = [Path(p.strip()) for p in self.model_paths.split(",") if p.strip()]
        return [*(shipped_checkpoints() if self.shipped_models else []), *listed]

    @property
    def preset_models(self) -> list[tuple[str, str]]:
        pairs = [p.strip().split(":", 1) for p in self.presets.split(",") if p.strip()]
        return [(kind, preset) for kind, preset in pairs]
