"""Runtime settings of the inference server, from VLA_* environment variables."""

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vlarena.serving.openpi.profiles import PROFILES


class ServerSettings(BaseSettings):
    """Every knob of `vlarena serve`; each field is the env var VLA_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="VLA_", extra="ignore", frozen=True)

    # Model
    model_type: str | None = None  # policy type; checked against the checkpoint, else vla-flow
    model_path: Path | None = None  # checkpoint directory; unset: random-weight `small` preset
    extra_model_paths: str = ""  # comma-separated further model specs to serve
    device: str = "cpu"  # cpu, cuda, cuda:N, mps, auto
    precision: str = "fp32"  # fp32, bf16, fp16
    # Inference
    batch_size: int = Field(1, ge=1, le=256)  # maximum dynamic batch
    max_queue_delay_ms: float = Field(2.0, ge=0, le=1000)  # wait for a batch to fill
    max_queue_size: int = Field(64, ge=1, le=100_000)  # queued requests per model, then refuse
    timeout_ms: int = Field(
        5000, ge=1, le=600_000
    )  # per-request deadline (client's may be shorter)
    chunk_size: int | None = Field(None, ge=1)  # if set, the model's chunk size must equal it
    action_dim: int | None = Field(None, ge=1)  # if set, the model's action size must equal it
    image_width: int | None = Field(None, ge=1)  # if set, the model's input width must equal it
    image_height: int | None = Field(None, ge=1)  # if set, the model's input height must equal it
    # Server
    host: str = "127.0.0.1"  # bind address; 0.0.0.0 exposes the server to the network
    grpc_port: int = Field(50051, ge=0, le=65535)  # 0 picks a free port
    max_workers: int = Field(4, ge=1, le=256)  # threads decoding requests (JPEG) off the loop
    max_message_size_mb: int = Field(16, ge=1, le=1024)
    auth_token: SecretStr | None = Field(None, min_length=1)  # clients send "Bearer <token>"
    tls_cert: Path | None = None  # PEM certificate; with tls_key, the server speaks TLS
    tls_key: Path | None = None
    # openpi's websocket protocol (vlarena.serving.openpi), in front of the same batchers
    websocket_port: int | None = Field(None, ge=0, le=65535)  # unset: off; 0 picks a free port
    websocket_profile: str = "native"  # observation profile of connections to "/"
    drain_timeout_s: float = Field(10.0, ge=0)  # SIGTERM: time to finish in-flight requests
    # Dual-rate streams (StreamControl with dual_rate set)
    dual_rate_vlm_hz: float = Field(3.33, gt=0, le=1000)  # feature refreshes per second
    dual_rate_max_feature_age_s: float = Field(2.0, gt=0)  # older features are flagged stale
    # Metrics
    metrics_enabled: bool = True
    metrics_port: int = Field(9090, ge=0, le=65535)  # 0 picks a free port

    @model_validator(mode="after")
    def _tls_pair(self) -> "ServerSettings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("VLA_TLS_CERT and VLA_TLS_KEY must be set together")
        return self

    @field_validator("websocket_profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown observation profile {value!r}; valid: {', '.join(PROFILES)}")
        return value

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_size_mb * 1024 * 1024

    @property
    def extra_models(self) -> list[str]:
        """The model specs of VLA_EXTRA_MODEL_PATHS (vlarena.policies.specs)."""
        return [p.strip() for p in self.extra_model_paths.split(",") if p.strip()]
