"""Remote contestants in the execution catalog: configured without code, validated up front."""

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from openpi_client import msgpack_numpy
from pydantic import ValidationError
from websockets.sync.server import ServerConnection, serve

from vlarena.errors import ConfigError, UnavailableError
from vlarena.execution.catalog import ModelCatalog
from vlarena.execution.settings import ExecutionSettings, RemoteModel
from vlarena.sim.world import shared_world


def settings(**overrides: object) -> ExecutionSettings:
    return ExecutionSettings(presets="", shipped_models=False, **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"name": "x", "url": "http://host:1"}, "grpc://HOST:PORT"),
        ({"name": "x", "url": "ws://host"}, "ws://HOST:PORT"),
        ({"name": "x", "url": "ws://host:1", "profile": "aloha"}, "droid, libero, native"),
        ({"name": "", "url": "ws://host:1"}, "at least 1 character"),
        ({"name": "x", "url": "ws://host:1", "timeout_s": 0}, "greater than 0"),
        ({"name": "x", "url": "ws://host:1", "extra": 1}, "Extra inputs"),
    ],
)
def test_bad_contestants_are_refused_at_start_up(model: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RemoteModel.model_validate(model)


def test_contestants_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = tmp_path / "contestants.json"
    listed.write_text(json.dumps([{"name": "b", "url": "grpc://h:2/m", "token": "secret"}]))
    monkeypatch.setenv("VLA_EXEC_REMOTE_MODELS", json.dumps([{"name": "a", "url": "ws://h:1"}]))
    monkeypatch.setenv("VLA_EXEC_REMOTE_MODELS_FILE", str(listed))
    loaded = settings()
    assert [m.name for m in loaded.remote_models] == ["a", "b"]
    entries = {e.name: e for e in ModelCatalog(loaded).entries()}
    assert (entries["b"].kind, entries["b"].source) == ("remote", "grpc://h:2/m")  # no token
    monkeypatch.setenv("VLA_EXEC_REMOTE_MODELS", json.dumps([{"name": "b", "url": "ws://h:1"}]))
    with pytest.raises(ValidationError, match="same name"):
        settings()
    monkeypatch.setenv("VLA_EXEC_REMOTE_MODELS_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(ValidationError, match="cannot read"):
        settings()


def test_a_contestant_named_like_another_model_is_refused() -> None:
    clash = [RemoteModel(name="scripted-expert", url="ws://h:1")]
    with pytest.raises(ConfigError, match="scripted-expert"):
        ModelCatalog(settings(remote_models=clash))


@pytest.fixture
def openpi_server() -> Iterator[str]:
    """A minimal openpi-protocol server that states no contract."""

    def session(ws: ServerConnection) -> None:
        ws.send(msgpack_numpy.packb({}))
        for _ in ws:
            ws.send(msgpack_numpy.packb({"actions": np.zeros((3, 8))}))

    with serve(session, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()


def test_a_contestant_runs_under_its_name_and_its_failures_hide_its_address(
    openpi_server: str,
) -> None:
    contestants = [
        RemoteModel(
            name="owner",
            url=openpi_server,
            profile="libero",
            timeout_s=2,
            license="MIT",
            source="https://example.org/owner",
        ),
        RemoteModel(name="gone", url="ws://127.0.0.1:1/x", timeout_s=2),
    ]
    catalog = ModelCatalog(settings(remote_models=contestants))
    info = catalog.info("owner")
    assert info is not None
    assert (info.name, info.image_height, info.action_dim) == ("owner", 224, 8)
    card = catalog.card("owner")
    assert (card.kind, card.license, card.source) == ("remote", "MIT", "https://example.org/owner")
    assert openpi_server not in card.model_dump_json()  # its server's address stays private
    controller = catalog.controller("owner")
    world = shared_world("table")
    assert controller.next_chunk(world, "touch the red cube", 0).model_id == "owner"
    controller.close()
    down = catalog.card("gone")  # its server is down: what its settings say, no error
    assert (down.kind, down.family, down.parameters) == ("remote", None, None)
    with pytest.raises(UnavailableError) as failed:
        catalog.info("gone")
    assert "gone's server" in str(failed.value)
    assert "127.0.0.1:1" not in str(failed.value)
