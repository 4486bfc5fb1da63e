"""The models the execution service can run: the scripted expert, checkpoints, presets, models
of a gRPC inference server, and policy servers entered as contestants (`RemoteModel`: our gRPC
or openpi's websocket protocol). Every one but the expert is a model spec
(`vlarena.policies.specs`); local models load lazily, once; what a remote server serves is
asked again after `REMOTE_TTL_S`, and a contestant is connected once per episode."""

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar, cast
from urllib.parse import urlsplit

from pydantic import ValidationError

from vlarena import __license__, __version__
from vlarena.errors import (
    ConfigError,
    InvalidRequestError,
    ModelLoadError,
    PolicyOutputError,
    RetryLaterError,
    UnknownNameError,
    VLArenaError,
)
from vlarena.execution.schemas import ModelCard
from vlarena.execution.settings import ExecutionSettings
from vlarena.policies import DeviceConfig, Policy, Seeds
from vlarena.policies.checkpoint import CARD_FIELDS
from vlarena.policies.lerobot.layout import PREFIX as LEROBOT_PREFIX
from vlarena.policies.lerobot.layout import split_spec
from vlarena.policies.specs import REMOTE_KINDS, Connect, ModelSpec, resolve_policy
from vlarena.serving.client import ClientOptions, RemotePolicy, VLAClient
from vlarena.serving.remote import connect
from vlarena.sim import Controller, ExpertController, PolicyController
from vlarena.types import ActionChunk, ModelInfo, Observation

EXPERT = "scripted-expert"
EXPERT_SUMMARY = (
    "not learned: a planner that reads the simulator's state (not the cameras) and moves the "
    "arm by inverse kinematics; the demonstrations' teacher"
)
log = logging.getLogger(__name__)
REMOTE_TTL_S = 5.0  # how long the inference server's model list and contracts are trusted
T = TypeVar("T")
FAILURE_TTL_S = 1.0  # how long a failed ask of the inference server is remembered
MISS_MAX_AGE_S = 0.5  # a name not in the list asks again if the list is older than this


@dataclass(frozen=True)
class Entry:
    """A model the service knows how to run."""

    name: str
    kind: str  # "expert", "checkpoint", "lerobot", "preset" or "remote"
    source: str  # checkpoint path, type:preset, or the inference server


class TimedAnswers:
    """Answers of a remote peer, each trusted for `ttl_s`; a failed ask (a domain error) is
    remembered for FAILURE_TTL_S, so a dead peer is not asked once per request."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        # key → (fetched at, expires at, answer or the domain error it raised)
        self._cache: dict[str, tuple[float, float, object]] = {}
        self._lock = threading.Lock()  # one ask at a time; readers of a fresh answer skip it

    def get(self, key: str, ask: Callable[[], T], max_age_s: float | None = None) -> T:
        """The answer under `key`, asked again if expired or older than `max_age_s`."""
        hit = self._cache.get(key)
        if not self._fresh(hit, max_age_s):
            with self._lock:
                hit = self._cache.get(key)
                if not self._fresh(hit, max_age_s):  # nobody asked while this thread waited
                    now = self._clock()
                    try:
                        hit = (now, now + self._ttl_s, ask())
                    except VLArenaError as exc:
                        hit = (now, now + FAILURE_TTL_S, exc)
                    self._cache[key] = hit  # one per key the peer's answers are kept under
        assert hit is not None
        if isinstance(hit[2], VLArenaError):
            raise hit[2]
        return cast(T, hit[2])

    def _fresh(self, hit: tuple[float, float, object] | None, max_age_s: float | None) -> bool:
        if hit is None:
            return False
        now = self._clock()
        return now <= hit[1] and (max_age_s is None or now - hit[0] <= max_age_s)


class RemoteModels:
    """What an inference server serves, cached (`TimedAnswers`): its model names (HealthCheck)
    and each model's contract (GetModelInfo). Unreachable, it raises UnavailableError (retry)."""

    def __init__(
        self, client: VLAClient, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self._answers = TimedAnswers(ttl_s, clock)

    def names(self, max_age_s: float | None = None) -> tuple[str, ...]:
        """The served model names, asked again if older than `max_age_s` (default: the TTL)."""
        return self._answers.get("", lambda: tuple(self.client.health().models), max_age_s)

    def info(self, name: str) -> ModelInfo:
        """A served model's contract (UnknownNameError if the server does not serve it)."""
        return self._answers.get(f"info:{name}", lambda: RemotePolicy(self.client, name).info)


class Listed(Policy):
    """A contestant's remote policy under the name the catalog lists it by; its failures name
    that, not its server's address (the arena shows them to voters, who must not learn which
    owner's server a side is)."""

    def __init__(self, connect: Callable[[], Policy], name: str, address: str) -> None:
        self._name = name
        self._address = address
        with self._masked():
            self._policy = connect()
        self._info = replace(self._policy.info, name=name)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        with self._masked():
            chunks = self._policy.predict(observations, seeds)
        return [replace(chunk, model_id=self._name) for chunk in chunks]

    def close(self) -> None:
        self._policy.close()

    @contextmanager
    def _masked(self) -> Iterator[None]:
        try:
            yield
        except VLArenaError as exc:
            # The URL first, then its HOST:PORT (a gRPC target is only that; gRPC's own
            # messages quote it bare).
            netloc = urlsplit(self._address if "//" in self._address else f"//{self._address}")
            detail = str(exc)
            for shown in (self._address, netloc.netloc):
                detail = detail.replace(shown, f"{self._name}'s server")
            raise type(exc).from_detail(detail, exc.retry_after_s) from None


class ModelCatalog:
    """Names → controllers; loading failures surface as ModelLoadError (HTTP 500)."""

    def __init__(self, settings: ExecutionSettings) -> None:
        self._device = DeviceConfig(device=settings.device)
        self._entries: dict[str, Entry] = {EXPERT: Entry(EXPERT, "expert", "built-in")}
        self._specs: dict[str, ModelSpec] = {}
        for path in settings.checkpoints:
            spec = ModelSpec("checkpoint", str(path))
            try:
                lerobot = split_spec(str(path))  # a LeRobot directory (where LeRobot is installed)
                if lerobot is not None:
                    spec = ModelSpec("lerobot", lerobot[0], options=lerobot[1])
                name = spec.name
            except VLArenaError:
                name = path.name  # listed anyway: loading it reports the problem
                if str(path).startswith(LEROBOT_PREFIX):
                    spec = ModelSpec("lerobot", str(path).removeprefix(LEROBOT_PREFIX))
            self._add(Entry(name, spec.kind, str(path)), spec)
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
        # Policy servers entered as contestants: connected per episode, contracts cached.
        self._contestants = {m.name: m for m in settings.remote_models}
        self._contracts = TimedAnswers(REMOTE_TTL_S)
        for model in settings.remote_models:
            if model.name in self._entries:
                raise ConfigError(f"remote model {model.name!r} has the name of another model")
            self._entries[model.name] = Entry(model.name, "remote", model.url.split("#")[0])

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
        if name in self._contestants:
            return self._contracts.get(name, lambda: self._contract(name))
        if self._remote is None:
            raise UnknownNameError("model", name, self._entries)
        served = self._remote.names()
        if name not in served:  # perhaps served since the list was fetched: look once more
            served = self._remote.names(max_age_s=MISS_MAX_AGE_S)
        if name not in served:
            raise UnknownNameError("model", name, [*self._entries, *served])
        return self._remote.info(name)

    def card(self, name: str) -> ModelCard:
        """A model's card: its contract's family and size with the card it carries (a
        checkpoint's, or what its server sends), a contestant's license and source from its
        settings (blocking, like `info`)."""
        if name == EXPERT:
            return ModelCard(
                model_id=EXPERT,
                kind="expert",
                family="scripted",
                parameters=None,
                version=__version__,
                trained=EXPERT_SUMMARY,
                license=__license__,
                source="built into VLArena",
            )
        contestant = self._contestants.get(name)
        try:
            info = self.info(name)
        except RetryLaterError:
            if contestant is None:
                raise
            info = None  # its server is down: the card says what its settings say
        spec = self._specs.get(name)
        preset = spec is not None and spec.kind == "preset"  # random weights, our architecture
        base = {
            "model_id": name,
            "kind": spec.kind if spec is not None else "remote",
            "family": info.policy_type if info else None,
            "parameters": info.num_params or None if info else None,
            "version": info.version if info else None,
            "trained": "not trained: random weights" if preset else None,
            "license": __license__ if preset else None,
        }
        fields = _card_fields(name, info.card) if info else {}
        if contestant is not None:  # what its entrant states wins over what its server says
            stated = {"license": contestant.license, "source": contestant.source}
            fields |= {k: v for k, v in stated.items() if v is not None}
        try:
            return ModelCard.model_validate(base | fields)
        except ValidationError as exc:
            log.warning("the card of %s is malformed, shown without it: %s", name, exc)
            return ModelCard.model_validate(base)

    def controller(self, name: str) -> Controller:
        """A fresh controller for one episode (blocking: may load a model or ask the server)."""
        if name == EXPERT:
            return ExpertController()
        if name in self._contestants:
            return PolicyController(self._contestant(name))
        if name not in self._specs:
            return PolicyController(self._remote_policy(name))
        return PolicyController(self._local(name))

    def _contestant(self, name: str) -> Policy:
        """A contestant's policy server, on a connection of its own (the episode closes it)."""
        model = self._contestants[name]
        token = model.token.get_secret_value() if model.token else None
        remote = partial(connect, token=token, timeout_s=model.timeout_s)
        return Listed(partial(self._open, name, model.spec, remote), name, model.spec.source)

    def _contract(self, name: str) -> ModelInfo:
        policy = self._contestant(name)
        try:
            return policy.info
        finally:
            policy.close()

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

    def _open(self, name: str, spec: ModelSpec, remote: Connect | None = None) -> Policy:
        try:
            return resolve_policy(spec, self._device, remote or self._connect)
        except (InvalidRequestError, PolicyOutputError, RetryLaterError):
            raise  # the inference server's answer: a bad request, a failure, or unreachable
        except UnknownNameError as exc:
            if spec.kind in REMOTE_KINDS:
                raise
            raise ModelLoadError(f"failed to load {name}: {exc}") from None
        except (VLArenaError, KeyError, OSError) as exc:
            raise ModelLoadError(f"failed to load {name}: {exc}") from None

    def _connect(self, spec: ModelSpec) -> Policy:
        assert self._remote is not None  # remote specs come from the inference target
        return RemotePolicy(self._remote.client, spec.model)


def _card_fields(name: str, card: str) -> dict[str, object]:
    """The card fields of a model's JSON card ({} if it has none or it is not an object)."""
    if not card:
        return {}
    try:
        parsed = json.loads(card)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        log.warning("the card of %s is not a JSON object; shown without it", name)
        return {}
    return {k: parsed[k] for k in CARD_FIELDS if k in parsed}
