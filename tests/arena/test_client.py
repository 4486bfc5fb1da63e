"""The client to the execution service: breaker states, retries, error mapping (real HTTP)."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.loopback import RunningServer, serve_in_thread
from vlarena.arena.breaker import CircuitBreaker
from vlarena.arena.client import ExecutionClient
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.views import anonymize
from vlarena.errors import (
    ExecutionFailedError,
    ExecutionUnavailableError,
    InvalidRequestError,
    UnknownNameError,
)
from vlarena.execution.schemas import ExecuteRequest
from vlarena.testing import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_probes_once_and_recovers() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        breaker.record(ok=False, probe=breaker.before_call())
    assert breaker.state == "closed"
    breaker.record(ok=True, probe=False)  # a success resets the count
    for _ in range(3):
        breaker.record(ok=False, probe=breaker.before_call())
    assert (breaker.state, breaker.opened_count) == ("open", 1)
    with pytest.raises(ExecutionUnavailableError) as caught:
        breaker.before_call()
    assert caught.value.retry_after_s == 10
    clock.now = 10.0
    assert (breaker.state,) == ("half_open",)
    assert breaker.before_call() is True  # the probe
    with pytest.raises(ExecutionUnavailableError):
        breaker.before_call()  # only one probe at a time
    breaker.record(ok=True, probe=False)  # a late success from before the opening: ignored
    assert (breaker.state,) == ("half_open",)
    breaker.record(ok=False, probe=True)  # the probe failed: open for another reset_s
    assert (breaker.state, breaker.opened_count) == ("open", 2)
    clock.now = 15.0
    assert breaker.retry_after_s() == 5
    clock.now = 20.0
    breaker.record(ok=True, probe=breaker.before_call())
    assert breaker.state == "closed"
    assert breaker.retry_after_s() == 0


class Flaky:
    """A real HTTP service that fails `failures` times with `status`, then answers."""

    def __init__(self, failures: int, status: int) -> None:
        self.calls = 0
        self.card_calls: list[str] = []
        self.error = "x"
        self.app = FastAPI()

        @self.app.get("/models")
        async def models() -> Any:
            self.calls += 1
            if self.calls <= failures:
                body = {"error": self.error, "detail": f"failure {self.calls}"}
                return JSONResponse(body, status)
            return [{"model_id": "m1"}, {"model_id": "m2"}]

        @self.app.get("/models/{model_id:path}/card")
        async def card(model_id: str) -> Any:  # its model's server is down
            self.card_calls.append(model_id)
            body = {"error": "inference_unavailable", "detail": "down", "retry_after_s": 1}
            return JSONResponse(body, 503)

        @self.app.post("/episodes", status_code=202)
        async def start() -> dict[str, str]:
            return {"episode_id": "e1", "status_url": "/episodes/e1"}

        @self.app.get("/episodes/{episode_id}")
        async def poll(episode_id: str) -> Any:  # as after a restart: nobody knows it
            return JSONResponse(
                {"error": "not_found", "detail": f"unknown episode {episode_id!r}"}, 404
            )


@pytest.fixture
def flaky_server() -> Iterator[Any]:
    servers: list[RunningServer] = []

    def start(failures: int, status: int) -> tuple[Flaky, str]:
        flaky = Flaky(failures, status)
        servers.append(serve_in_thread(flaky.app))
        return flaky, servers[-1].url

    yield start
    for server in servers:
        server.stop()


def settings(url: str, **overrides: Any) -> ArenaSettings:
    values: dict[str, Any] = {"server_url": url, "retry_initial_s": 0.01, "retry_max_s": 0.05}
    return ArenaSettings(**(values | overrides))


async def test_transient_failures_are_retried(flaky_server: Any) -> None:
    flaky, url = flaky_server(failures=2, status=503)
    client = ExecutionClient(settings(url, retry_attempts=3))
    assert await client.models() == ["m1", "m2"]
    assert flaky.calls == 3
    assert client.breaker.state == "closed"
    await client.aclose()


async def test_retries_run_out_into_unavailable(flaky_server: Any) -> None:
    flaky, url = flaky_server(failures=10, status=502)
    client = ExecutionClient(settings(url, retry_attempts=3, breaker_failures=3))
    with pytest.raises(ExecutionUnavailableError, match="HTTP 502: failure 3"):
        await client.models()
    assert flaky.calls == 3
    assert client.breaker.state == "open"
    with pytest.raises(ExecutionUnavailableError, match="circuit breaker open"):
        await client.models()
    assert flaky.calls == 3  # failed fast: the service was not called
    await client.aclose()


@pytest.mark.parametrize(
    ("status", "error"), [(500, ExecutionFailedError), (422, InvalidRequestError)]
)
async def test_answers_that_retrying_cannot_fix_are_not_retried(
    flaky_server: Any, status: int, error: type[Exception]
) -> None:
    flaky, url = flaky_server(failures=10, status=status)
    client = ExecutionClient(settings(url, breaker_failures=1))
    with pytest.raises(error, match="failure 1"):
        await client.models()
    assert flaky.calls == 1
    assert client.breaker.state == "closed"  # the service answered: it is up
    await client.aclose()


async def test_a_failing_model_is_not_the_service_being_down(flaky_server: Any) -> None:
    flaky, url = flaky_server(failures=10, status=502)
    flaky.error = "inference_failed"  # the service's own 502: the model answered nonsense
    client = ExecutionClient(settings(url, breaker_failures=1))
    with pytest.raises(ExecutionFailedError, match="failure 1"):
        await client.models()
    assert flaky.calls == 1
    assert client.breaker.state == "closed"
    await client.aclose()


def test_error_details_never_name_the_hidden_models() -> None:
    models = ("octo", "octo-base")
    detail = "octo-base failed; octo too; octopus and octo.v2 are other names, unlike octo."
    assert anonymize(detail, models) == (
        "model B failed; model A too; octopus and octo.v2 are other names, unlike model A."
    )
    listed = "unknown model 'octo'; valid: alpha, octo-base, zeta"
    assert anonymize(listed, models) == "unknown model 'model A'"


async def test_an_episode_the_service_forgot_is_unavailable(flaky_server: Any) -> None:
    _, url = flaky_server(failures=0, status=200)
    client = ExecutionClient(settings(url))
    request = ExecuteRequest(model_id="m", robot_id="franka", scene_id="table", instruction="x")
    with pytest.raises(ExecutionUnavailableError, match="lost the episode"):
        await client.execute(request)
    await client.aclose()


async def test_nothing_listening_is_unavailable() -> None:
    client = ExecutionClient(settings(f"http://127.0.0.1:{free_port()}", retry_attempts=2))
    request = ExecuteRequest(model_id="m", robot_id="franka", scene_id="table", instruction="x")
    with pytest.raises(ExecutionUnavailableError, match="ConnectError") as caught:
        await client.execute(request)
    assert caught.value.retry_after_s >= 0.05
    await client.aclose()


def failing_episodes(error: dict[str, Any]) -> FastAPI:
    """A service whose episodes start, then fail with this error body."""
    app = FastAPI()

    @app.post("/episodes", status_code=202)
    async def start() -> dict[str, str]:
        return {"episode_id": "e1", "status_url": "/episodes/e1"}

    @app.get("/episodes/{episode_id}")
    async def poll(episode_id: str) -> dict[str, Any]:
        return {
            "episode_id": episode_id,
            "status": "failed",
            "steps_done": 3,
            "max_steps": 10,
            "error": error,
        }

    return app


@pytest.mark.parametrize(
    ("body", "error", "retry_after_s"),
    [
        (
            {"error": "saturated", "detail": "full", "retry_after_s": 3.0},
            ExecutionUnavailableError,
            3.0,
        ),
        (
            {"error": "inference_unavailable", "detail": "warming up"},
            ExecutionUnavailableError,
            1.0,
        ),
        ({"error": "inference_failed", "detail": "NaN actions"}, ExecutionFailedError, None),
        ({"error": "invalid_request", "detail": "no bin"}, InvalidRequestError, None),
        ({"error": "not_found", "detail": "unknown model"}, UnknownNameError, None),
        ({"error": "something_new", "detail": "brand new"}, ExecutionFailedError, None),
    ],
)
async def test_a_failed_episode_is_decoded_with_the_catalogue(
    body: dict[str, Any], error: type[Exception], retry_after_s: float | None
) -> None:
    server = serve_in_thread(failing_episodes(body))
    client = ExecutionClient(settings(server.url))
    request = ExecuteRequest(model_id="m", robot_id="franka", scene_id="table", instruction="x")
    try:
        with pytest.raises(error, match=body["detail"]) as caught:
            await client.execute(request)
        assert type(caught.value) is error
        assert getattr(caught.value, "retry_after_s", None) == retry_after_s
        assert client.breaker.state == "closed"
    finally:
        await client.aclose()
        server.stop()


async def test_a_saturated_service_is_retried_then_unavailable_with_its_hint(
    flaky_server: Any,
) -> None:
    flaky, url = flaky_server(failures=10, status=503)
    flaky.error = "saturated"
    client = ExecutionClient(settings(url, retry_attempts=2))
    with pytest.raises(ExecutionUnavailableError, match="HTTP 503: failure 2") as caught:
        await client.models()
    assert flaky.calls == 2
    assert caught.value.retry_after_s == 10.0  # SaturatedError's own, the body gave none
    await client.aclose()


async def test_a_card_that_cannot_be_had_fails_no_battle(flaky_server: Any) -> None:
    flaky, url = flaky_server(failures=0, status=503)
    client = ExecutionClient(settings(url, retry_attempts=3, breaker_failures=2))
    for _ in range(4):  # a dead contestant's card, asked again and again
        assert await client.card("acme/pi0") is None
    assert flaky.card_calls == ["acme/pi0"]  # asked once, not retried; the miss is kept
    assert client.breaker.state == "closed"  # battles go on
    assert await client.models() == ["m1", "m2"]
    await client.aclose()


async def test_several_services_take_turns_and_a_dead_one_is_skipped(flaky_server: Any) -> None:
    first, first_url = flaky_server(failures=0, status=503)
    second, second_url = flaky_server(failures=0, status=503)
    dead = f"http://127.0.0.1:{free_port()}"
    client = ExecutionClient(
        settings(f"{first_url},{dead},{second_url}", retry_attempts=3, breaker_failures=1)
    )
    for _ in range(6):
        client._models = None  # ask every time
        assert await client.models() == ["m1", "m2"]
    states = {t.url: t.breaker.state for t in client.targets}
    assert states == {first_url: "closed", dead: "open", second_url: "closed"}
    assert min(first.calls, second.calls) >= 2  # both live services answered some
    assert first.calls + second.calls == 6  # the dead one cost retries, not failures
    await client.aclose()


def test_service_urls_are_checked() -> None:
    assert settings("http://a:1/, http://b:2").server_urls == ("http://a:1", "http://b:2")
    with pytest.raises(ValueError, match="VLA_SERVER_URL"):
        settings("a:1")


async def test_a_half_open_service_with_its_probe_out_is_skipped(flaky_server: Any) -> None:
    _, first_url = flaky_server(failures=0, status=503)
    _, second_url = flaky_server(failures=0, status=503)
    client = ExecutionClient(settings(f"{first_url},{second_url}", breaker_reset_s=0.01))
    probing = client.targets[0].breaker
    probing.record(ok=False, probe=probing.before_call())  # one failure: open, soon half open
    probing.record(ok=False, probe=False)
    for _ in range(5):
        probing.record(ok=False, probe=False)
    time.sleep(0.02)
    assert probing.before_call() is True  # a probe goes out and has not come back
    assert {client._pick().url for _ in range(4)} == {second_url}
    await client.aclose()
