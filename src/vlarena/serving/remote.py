"""Remote model specs as policies, over the protocol each names: our gRPC (`grpc://`) or
openpi's websocket protocol (`ws://`, `wss://`)."""

from vlarena.errors import ConfigError
from vlarena.policies.base import Policy
from vlarena.policies.specs import ModelSpec
from vlarena.serving.client import ClientOptions, RemotePolicy
from vlarena.serving.openpi.client import OpenPIOptions, OpenPIPolicy


def connect(spec: ModelSpec, token: str | None = None, timeout_s: float = 10.0) -> Policy:
    """The policy a remote spec names, connected now (its own channel; `close()` ends it)."""
    if spec.kind == "openpi":
        options = OpenPIOptions(spec.source, spec.profile or None, token, timeout_s)
        return OpenPIPolicy(options)
    if spec.kind == "remote":
        return RemotePolicy.connect(spec, ClientOptions(token=token, timeout_s=timeout_s))
    raise ConfigError(f"a {spec.kind} spec is not remote")
