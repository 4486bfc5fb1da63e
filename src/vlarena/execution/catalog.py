"""The models the execution service can run: the scripted expert, checkpoints, presets, and
models of a gRPC inference server. Local models load lazily, once."""

import threading
from dataclasses import dataclass

import grpc

from vlarena.errors import ModelLoadError, UnknownNameError, VLArenaError
from vlarena.execution.settings import ExecutionSettings
from vlarena.policies import DeviceConfig, Policy, load_policy, random_native
from vlarena.policies.checkpoint import read_metadata
from vlarena.serving.client import ClientOptions, VLAClient
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
        for path in settings.checkpoints:
            try:
                name = read_metadata(path).name
            except VLArenaError:
                name = path.name  # listed anyway: loading it reports the problem
            self._entries[name] = Entry(name, "checkpoint", str(path))
        for kind, preset in settings.preset_models:
            name = f"{kind}-{preset}-random"
            self._entries[name] = Entry(name, "preset", f"{kind}:{preset}")
        self._loaded: dict[str, Policy] = {}
        self._lock = threading.Lock()
        self._remote: VLAClient | None = None
        if settings.inference_target:
            token = (
                settings.inference_token.get_secret_value() if settings.inference_token else None
            )
            self._remote = VLAClient(ClientOptions(target=settings.inference_target, token=token))

    def entries(self) -> list[Entry]:
        """Local entries, then the inference server's models (if it answers)."""
        local = list(self._entries.values())
        if self._remote is None:
            return local
        try:
            served = self._remote.health().models
        except grpc.RpcError:
            return local
        target = self._remote.options.target
        return local + [Entry(n, "remote", target) for n in served if n not in self._entries]

    def check(self, name: str) -> None:
        """Raise UnknownNameError unless `name` is local or could be remote."""
        if name not in self._entries and self._remote is None:
            raise UnknownNameError("model", name, self._entries)

    def controller(self, name: str) -> Controller:
        """A fresh controller for one episode (blocking: may load a model)."""
        entry = self._entries.get(name)
        if entry is None:
            return self._remote_controller(name)
        if entry.kind == "expert":
            return ExpertController()
        policy = self._load(entry)
        return PolicyController.local(policy)

    def _load(self, entry: Entry) -> Policy:
        with self._lock:
            if entry.name not in self._loaded:
                try:
                    if entry.kind == "checkpoint":
                        self._loaded[entry.name] = load_policy(entry.source, self._device)
                    else:
                        kind, preset = entry.source.split(":", 1)
                        self._loaded[entry.name] = random_native(kind, preset, self._device)
                except (VLArenaError, KeyError, OSError) as exc:
                    raise ModelLoadError(f"failed to load {entry.name}: {exc}") from None
            return self._loaded[entry.name]

    def _remote_controller(self, name: str) -> Controller:
        remote = self._remote
        if remote is None:
            raise UnknownNameError("model", name, self._entries)
        try:
            info = remote.model_info(name)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise UnknownNameError("model", name, [e.name for e in self.entries()]) from None
            raise  # unreachable or failing server: 502 inference_failed
        return PolicyController(info, lambda o, s: remote.predict(o, model=name, seed=s).chunk)
