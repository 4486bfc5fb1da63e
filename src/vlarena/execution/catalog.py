"""The models the execution service can run: the scripted expert, checkpoints, presets, and
models of a gRPC inference server. Every one but the expert is a model spec
(`vlarena.policies.specs`); local models load lazily, once; what the inference server serves
is asked again after `REMOTE_TTL_S`."""

import threading
import time
from collections.abc import Callable
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
from vlarena.types import ModelInfo

EXPERT = "scripted-expert"
REMOTE_TTL_S = 5.0  # how long the inference server's model list and contracts are trusted


@dataclass(frozen=True)
class Entry:
    """A model the service knows how to run."""

    name: str
    kind: str  # "expert", "checkpoint", "preset" or "remote"
    source: str  # checkpoint path, type:preset, or the inference server


class RemoteModels:
    """What an inference server serves, cached for `ttl_s`: its model names (HealthCheck) and
    each model's contract (GetModelInfo). Unreachable, it raises UnavailableError (retry)."""

    def __init__(
        self, client: VLAClient, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._names: tuple[float, tuple[str, ...]] | None = None
        self._infos: dict[str, tuple[float, ModelInfo]] = {}
        self._lock = threading.Lock()  # one refresh at a time; readers of a fresh cache skip it

    def names(self) -> tuple[str, ...]:
        """The served model names."""
        with self._lock:
            if self._names is None or self._stale(self._names[0]):
                self._names = (self._clock(), tuple(self.client.health().models))
            return self._names[1]

    def info(self, name: str) -> ModelInfo:
        """A served model's contract (UnknownNameError if the server does not serve it)."""
        with self._lock:
            cached = self._infos.get(name)
            if cached is None or self._stale(cached[0]):
                cached = (self._clock(), RemotePolicy(self.client, name).info)
                self._infos[name] = cached  # at most one per served name
            return cached[1]

    def _stale(self, fetched_at: float) -> bool:
        return self._clock() - fetched_at > self._ttl_s


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
        self._remote: RemoteModels | None = None
        if settings.inference_target:
            secret = settings.inference_token
            token = secret.get_secret_value() if secret else None
            client = VLAClient(ClientOptions(target=settings.inference_target, token=token))
            self._remote = RemoteModels(client, REMOTE_TTL_S)

    def _add(self, entry: Entry, spec: ModelSpec) -> None:
        self._entries[entry.name] = entry
        self._specs[entry.name] = spec

    def entries(self) -> list[Entry]:
        """Local entries, then the inference server's models (if it answers)."""
        local = list(self._entries.values())
        if self._remote is None:
            return local
        try:
            served = self._remote.names()
        except VLArenaError:
            return local
        target = self._remote.client.options.target
        return local + [Entry(n, "remote", target) for n in served if n not in self._entries]

    def info(self, name: str) -> ModelInfo | None:
        """The contract of a model the service runs (None: the expert, which fits every scene);
        blocking: it may load a local model or ask the inference server. UnknownNameError for
        a model it does not run, UnavailableError while the inference server is unreachable."""
        if name == EXPERT:
            return None
        if name in self._specs:
            return self._local(name).info
        if self._remote is None:
            raise UnknownNameError("model", name, self._entries)
        served = self._remote.names()
        if name not in served:
            raise UnknownNameError("model", name, [*self._entries, *served])
        return self._remote.info(name)

    def controller(self, name: str) -> Controller:
        """A fresh controller for one episode (blocking: may load a model or ask the server)."""
        if name == EXPERT:
            return ExpertController()
        if name not in self._specs:
            return PolicyController(self._remote_policy(name))
        return PolicyController(self._local(name))

    def _local(self, name: str) -> Policy:
        with self._lock:  # local models load once
            if name not in self._loaded:
                self._loaded[name] = self._open(name, self._specs[name])
            return self._loaded[name]

    def _remote_policy(self, name: str) -> Policy:
        """A model of the inference server, asked for its contract each episode (the server may
        have restarted with another model under the name); never under the lock."""
        if self._remote is None:
            raise UnknownNameError("model", name, self._entries)
        try:
            return self._open(name, ModelSpec("remote", self._remote.client.options.target, name))
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
        return RemotePolicy(self._remote.client, spec.model)
