"""The `vlarena` command line, run in-process."""

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vlarena.cli import app
from vlarena.policies import PRESETS, AutoregressiveVLAPolicy

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("models", "info", "demo"):
        assert command in result.output


def test_models_lists_types_and_presets() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "vla-ar, vla-flow" in result.output
    assert "pi0-scale" in result.output


def test_demo_runs_both_families() -> None:
    result = runner.invoke(app, ["demo", "--preset", "tiny", "--calls", "2"])
    assert result.exit_code == 0, result.output
    assert "vla-flow-tiny" in result.output
    assert "vla-ar-tiny" in result.output
    assert result.output.count("median latency") == 2


def test_info_and_demo_on_a_checkpoint(tmp_path: Path) -> None:
    AutoregressiveVLAPolicy.create(PRESETS["tiny"], "my-ar").save(tmp_path / "ck")
    result = runner.invoke(app, ["info", str(tmp_path / "ck")])
    assert result.exit_code == 0, result.output
    assert "my-ar (vla-ar)" in result.output
    result = runner.invoke(app, ["demo", "--checkpoint", str(tmp_path / "ck"), "--calls", "1"])
    assert result.exit_code == 0, result.output
    assert "my-ar" in result.output


def test_errors_are_one_line_not_tracebacks(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.json").write_text(json.dumps({"policy_type": "nope"}))
    for args in (
        ["info", str(tmp_path / "bad")],
        ["demo", "--preset", "huge"],
        ["demo", "--device", "cuda"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args
        assert "error:" in result.output
        assert "Traceback" not in result.output


def test_the_http_services_run_under_uvicorn_trusting_no_forwarded_headers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only the app's VLA_*_TRUSTED_PROXIES decide whose X-Forwarded-For is believed (uvicorn's
    own default trusts loopback), and no Server header names uvicorn."""
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("VLA_ARENA_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("VLA_EXEC_PRESETS", "")
    for command in ("arena", "execute"):
        result = runner.invoke(app, [command])
        assert result.exit_code == 0, result.output
    assert [(c["proxy_headers"], c["server_header"]) for c in calls] == [(False, False)] * 2


def test_several_arena_processes_need_the_turn_queue(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without the queue each process would fail the others' turns at start-up; with it, the
    processes serve one app factory."""
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setenv("VLA_ARENA_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    refused = runner.invoke(app, ["arena", "--workers", "2"])
    assert refused.exit_code == 2
    assert "VLA_QUEUE_URL" in refused.output
    assert not calls
    monkeypatch.setenv("VLA_QUEUE_URL", "redis://127.0.0.1:6379/0")
    result = runner.invoke(app, ["arena", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert calls == [
        ("vlarena.arena.app:create_app", calls[0][1] | {"workers": 3, "factory": True})
    ]
