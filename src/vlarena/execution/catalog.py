"""The models the execution service can run: the scripted expert, checkpoints, presets, and
models of a gRPC inference server. Every one but the expert is a model spec
(`vlarena.policies.specs`); local models load lazily, once."""

import threading
from dataclasses import dataclass

from vlarena.errors import (
    InvalidRequestError,
    ModelLoadError,
    PolicyOutputError,
    RetryLaterError,
    UnknownNameError,
    VLArenaError,
)
from vlarena.execution.settings import ExecutionSettings
from vlarena.policies import DeviceConfig, Policy
from vlarena.policies.specs import ModelSpec, resolve_policy
from vlarena.serving.client import ClientOptions, RemotePolicy, VLAClient
from vlarena.sim import Controller, ExpertController, PolicyController

EXPERT = "scripted-expert"


@dataclass(frozen=True)
class Entry:
    """A model the service knows how to run."""

    name: str
    kind: str  # "expert", "checkpoint", "preset" or "remote"
    source: str  # checkpoint path, type:preset, or the inference server


class ModelCatalog:
    """Names → controllers; loading failures surface as ModelLoadError (HTTP 500)."""

    def __init__(self, settings: ExecutionSettings) -> None:
        self._device = DeviceConfig(device=settings.device)
        self._entries: dict[str, Entry] = {EXPERT: Entry(EXPERT, "expert", "built-in")}
        self._specs: dict[str, ModelSpec] = {}
        for path in settings.checkpoints:
            spec = ModelSpec("checkpoint", str(path))
            try:
                name = spec.name
            except VLArenaError:
                name = path.name  # listed anyway: loading it reports the problem
            self._add(Entry(name, "checkpoint", str(path)), spec)
        for kind, preset in settings.preset_models:
            spec = ModelSpec("preset", f"{kind}:{preset}")
            self._add(Entry(spec.name, "preset", spec.source), spec)
        self._loaded: dict[str, Policy] = {}
        self._lock = threading.Lock()
        self._remote: VLAClient | None = None
        if settings.inference_target:
            secret = settings.inference_token
            token = secret.get_secret_value() if secret else None
            self._remote = VLAClient(ClientOptions(target=settings.inference_target, token=token))

    def _add(self, entry: Entry, spec: ModelSpec) -> None:
        self._entries[entry.name] = entry
        self._specs[entry.name] = spec

    def entries(self) -> list[Entry]:
        """Local entries, then the inference server's models (if it answers)."""
        local = list(self._entries.values())
        if self._remote is None:
            return local
        try:
            served = self._remote.health().models
        except VLArenaError:
            return local
        target = self._remote.options.target
        return local + [Entry(n, "remote", target) for n in served if n not in self._entries]

    def check(self, name: str) -> None:
        """Raise UnknownNameError unless `name` is local or could be remote."""
        if name not in self._entries and self._remote is None:
            raise UnknownNameError("model", name, self._entries)

    def controller(self, name: str) -> Controller:
        """A fresh controller for one episode (blocking: may load a model or ask the server)."""
        if name == EXPERT:
            return ExpertController()
        spec = self._specs.get(name)
        if spec is None:
            return PolicyController(self._remote_policy(name))
        with self._lock:  # local models load once
            if name not in self._loaded:
                self._loaded[name] = self._open(name, spec)
            return PolicyController(self._loaded[name])

    def _remote_policy(self, name: str) -> Policy:
        """A model of the inference server, asked for its contract each episode (the server may
        have restarted with another model under the name); never under the lock."""
        if self._remote is None:
            raise UnknownNameError("model", name, self._entries)
        try:
            return self._open(name, ModelSpec("remote", self._remote.options.target, name))
        except UnknownNameError:
            raise UnknownNameError("model", name, [e.name for e in self.entries()]) from None

    def _open(self, name: str, spec: ModelSpec) -> Policy:
        try:
            return resolve_policy(spec, self._device, self._connect)
        except (InvalidRequestError, PolicyOutputError, RetryLaterError):
            raise  # the inference server's answer: a bad request, a failure, or unreachable
        except UnknownNameError as exc:
            if spec.kind == "remote":
                raise
            raise ModelLoadError(f"failed to load {name}: {exc}") from None
        except (VLArenaError, KeyError, OSError) as exc:
            raise ModelLoadError(f"failed to load {name}: {exc}") from None

    def _connect(self, spec: ModelSpec) -> Policy:
        assert self._remote is not None  # remote specs come from the inference target
        return RemotePolicy(self._remote, spec.model)
