"""The arena's HTTP client to the execution service: timeouts, retries with jittered
exponential backoff on transient failures, and a circuit breaker per service, so the arena
degrades cleanly when the execution service is slow or down. With several services
(VLA_SERVER_URL=URL,URL,...) calls go round robin, skipping any whose breaker is open; a retry
goes to the next one, and an episode is polled where it started.

Error answers are decoded with the error catalogue (the service's JSON `ErrorBody`, else its
bare HTTP status); then a retryable error is retried and, once the attempts run out, becomes
ExecutionUnavailableError; a request error (InvalidRequestError, UnknownNameError) is raised
as it is; anything else becomes ExecutionFailedError.
"""

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from vlarena.arena.breaker import CircuitBreaker
from vlarena.arena.settings import ArenaSettings
from vlarena.errors import (
    ExecutionFailedError,
    ExecutionUnavailableError,
    InvalidRequestError,
    UnknownNameError,
    VLArenaError,
    from_wire,
)
from vlarena.execution.schemas import ExecuteRequest, ExecuteResponse, ModelCard
from vlarena.httpjson import ErrorBody

log = logging.getLogger(__name__)
MODELS_TTL_S = 30.0
POLL_S = 0.25  # how often a running episode's progress is asked for


class _TransientError(Exception):
    """A failure worth retrying: the service was unreachable, dropped the call, or was busy."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # the service's own hint, if it gave one


@dataclass(frozen=True, eq=False)
class Target:
    """One execution service and its circuit breaker."""

    url: str
    breaker: CircuitBreaker


class ExecutionClient:
    """Calls the execution services; every failure ends as one of three domain errors."""

    def __init__(
        self, settings: ArenaSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.targets = [
            Target(url, CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s))
            for url in settings.server_urls
        ]
        self._turn = itertools.count()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.request_timeout_s, connect=5.0), transport=transport
        )
        self._models: tuple[float, list[str]] | None = None
        self._scenes: list[dict[str, Any]] | None = None
        self._cards: dict[str, tuple[float, ModelCard | None]] = {}  # model → (asked at, card)
        self._files: dict[str, bytes] = {}

    @property
    def breaker(self) -> CircuitBreaker:
        """The first service's breaker (the only one, unless several are configured)."""
        return self.targets[0].breaker

    def _pick(self) -> Target:
        """The next service in turn whose breaker lets a call through (else simply the next)."""
        start = next(self._turn)
        ring = [self.targets[(start + i) % len(self.targets)] for i in range(len(self.targets))]
        return next((t for t in ring if t.breaker.accepting), ring[0])

    async def models(self) -> list[str]:
        """Model ids the service runs (cached for a while)."""
        now = time.monotonic()
        if self._models is None or now - self._models[0] > MODELS_TTL_S:
            listed = await self._call("GET", "/models")
            try:
                self._models = (now, [str(m["model_id"]) for m in listed])
            except (TypeError, KeyError):
                raise ExecutionFailedError("unexpected /models answer") from None
        return self._models[1]

    async def card(self, model_id: str) -> ModelCard | None:
        """A model's card, None while it cannot be had. Asked once, past the retries and the
        circuit breaker (a card is not worth failing battles over: a contestant's dead server
        must not open the breaker); either answer is kept for MODELS_TTL_S."""
        now = time.monotonic()
        cached = self._cards.get(model_id)
        if cached is None or now - cached[0] > MODELS_TTL_S:
            cached = self._cards[model_id] = (now, await self._fetch_card(model_id))
        return cached[1]

    async def _fetch_card(self, model_id: str) -> ModelCard | None:
        try:
            target = self._pick()
            response = await self._http.get(f"{target.url}/models/{quote(model_id, safe='')}/card")
            if response.is_error:
                raise _decoded(response)
            return ModelCard.model_validate(response.json())
        except (httpx.HTTPError, ValueError, VLArenaError) as exc:  # ValidationError included
            log.warning("no card for %s: %s", model_id, exc)
            return None

    async def scenes(self) -> list[dict[str, Any]]:
        """The service's scenes with their example instructions (cached)."""
        if self._scenes is None:
            self._scenes = list(await self._call("GET", "/scenes"))
        return self._scenes

    async def scene_file(self, path: str) -> bytes:
        """A scene manifest or file, by its path on the service (cached: they never change)."""
        if path not in self._files:
            self._files[path] = await self._call("GET", path, raw=True)
        return self._files[path]

    async def check(self, request: ExecuteRequest) -> None:
        """Raise the request error (InvalidRequestError, UnknownNameError) the service would
        refuse this request with."""
        await self._call("POST", "/execute/check", request.model_dump(mode="json"))

    async def execute(
        self, request: ExecuteRequest, on_progress: Callable[[int], None] | None = None
    ) -> ExecuteResponse:
        """Run one episode: start it (POST /episodes), then poll it, reporting steps done."""
        target, started = await self._call_on(
            None, "POST", "/episodes", request.model_dump(mode="json")
        )
        deadline = time.monotonic() + self.settings.request_timeout_s
        while True:
            try:
                _, status = await self._call_on(target, "GET", str(started["status_url"]))
            except UnknownNameError:  # the service restarted and forgot the episode
                raise ExecutionUnavailableError(
                    "the execution service lost the episode (it restarted?)",
                    retry_after_s=self.settings.retry_max_s,
                ) from None
            if on_progress is not None:
                on_progress(int(status.get("steps_done", 0)))
            if status.get("status") == "done":
                try:
                    return ExecuteResponse.model_validate(status["result"])
                except (ValidationError, KeyError):
                    raise ExecutionFailedError(
                        "unexpected episode result: it does not match the /execute contract"
                    ) from None
            if status.get("status") == "failed":
                raise _job_error(status.get("error"))
            if time.monotonic() > deadline:
                raise ExecutionUnavailableError(
                    f"the episode did not finish within {self.settings.request_timeout_s:g} s",
                    retry_after_s=self.settings.retry_max_s,
                )
            await asyncio.sleep(POLL_S)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, raw: bool = False
    ) -> Any:
        return (await self._call_on(None, method, path, body, raw))[1]

    async def _call_on(
        self,
        pinned: Target | None,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        raw: bool = False,
    ) -> tuple[Target, Any]:
        """A call to `pinned`, else to the services in turn; returns the one that answered."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.retry_attempts),
            # initial · 2^n plus up to `initial` of jitter, at most retry_max_s
            wait=wait_exponential_jitter(
                multiplier=self.settings.retry_initial_s,
                jitter=self.settings.retry_initial_s,
                max=self.settings.retry_max_s,
            ),
            retry=retry_if_exception_type(_TransientError),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    target = pinned or self._pick()
                    return target, await self._once(target, method, path, body, raw)
        except _TransientError as exc:
            soonest = min(t.breaker.retry_after_s() for t in self.targets)
            wait = max(soonest, self.settings.retry_max_s, exc.retry_after_s)
            raise ExecutionUnavailableError(
                f"the execution service is unavailable: {exc}", retry_after_s=wait
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _once(
        self, target: Target, method: str, path: str, body: dict[str, Any] | None, raw: bool
    ) -> Any:
        probe = target.breaker.before_call()
        ok = False
        try:
            try:
                response = await self._http.request(method, f"{target.url}{path}", json=body)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout):
                    raise _TransientError(f"connect timeout ({exc})") from None
                # The episode may still be running there: retrying would double the load.
                raise ExecutionUnavailableError(
                    f"no answer within {self.settings.request_timeout_s:g} s",
                    retry_after_s=self.settings.retry_max_s,
                ) from None
            except httpx.TransportError as exc:
                raise _TransientError(
                    f"{type(exc).__name__}: {exc or 'connection failed'}"
                ) from None
            if response.is_error:
                error = _decoded(response)
                if error.retry_after_s is not None:  # busy, or a proxy without its service
                    raise _TransientError(
                        f"HTTP {response.status_code}: {error}", error.retry_after_s
                    )
                ok = True  # it answered: request errors are ours, a model failing is the model's
                raise _settled(error, f"HTTP {response.status_code}: ")
            ok = True
            try:
                return response.content if raw else response.json()
            except ValueError:
                raise ExecutionFailedError("the execution service answered with no JSON") from None
        finally:
            target.breaker.record(ok, probe)


def _decoded(response: httpx.Response) -> VLArenaError:
    """The domain error of an error answer: its JSON error body's, else its status code's."""
    try:
        body = ErrorBody.model_validate_json(response.content)
    except ValidationError:
        detail = response.text[:200] or response.reason_phrase
        return from_wire(None, detail, http_status=response.status_code)
    return body.to_error(response.status_code)


def _settled(error: VLArenaError, context: str = "") -> VLArenaError:
    """What the arena raises for an error that retrying now will not fix."""
    if isinstance(error, InvalidRequestError | UnknownNameError):
        return error  # what to fix in the request
    if error.retry_after_s is not None:
        return ExecutionUnavailableError(f"{context}{error}", error.retry_after_s)
    return ExecutionFailedError(f"{context}{error}")


def _job_error(body: Any) -> VLArenaError:
    """The domain error of an episode that failed on the service (its JSON error body)."""
    try:
        return _settled(ErrorBody.model_validate(body).to_error())
    except ValidationError:
        return ExecutionFailedError("episode failed (the service sent no error body)")
