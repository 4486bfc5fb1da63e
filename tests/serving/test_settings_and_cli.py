"""VLA_* settings validation, model loading from settings, and `vlarena serve` as a process."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from vlarena import ConfigError, UnknownNameError
from vlarena.policies import PRESETS, AutoregressiveVLAPolicy, FlowVLAPolicy
from vlarena.policies.shipped import shipped_checkpoint
from vlarena.serving.server import load_policies
from vlarena.serving.settings import ServerSettings


def test_defaults_are_safe() -> None:
    s = ServerSettings()
    assert (s.host, s.grpc_port, s.metrics_port, s.timeout_ms) == ("127.0.0.1", 50051, 9090, 5000)
    assert s.auth_token is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VLA_BATCH_SIZE": "0"}, "batch_size"),
        ({"VLA_GRPC_PORT": "70000"}, "grpc_port"),
        ({"VLA_TIMEOUT_MS": "soon"}, "timeout_ms"),
        ({"VLA_TLS_CERT": "/x.pem"}, "VLA_TLS_CERT and VLA_TLS_KEY"),
        ({"VLA_AUTH_TOKEN": ""}, "auth_token"),
    ],
)
def test_invalid_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        ServerSettings()


def test_load_policies_checks_the_contract(tmp_path: Path) -> None:
    FlowVLAPolicy.create(PRESETS["tiny"], "flow").save(tmp_path / "flow")
    AutoregressiveVLAPolicy.create(PRESETS["tiny"], "ar").save(tmp_path / "ar")
    both = load_policies(
        ServerSettings(model_path=tmp_path / "flow", extra_model_paths=str(tmp_path / "ar"))
    )
    assert [p.info.name for p in both] == ["flow", "ar"]
    with pytest.raises(ConfigError, match="VLA_CHUNK_SIZE=16 but model 'flow' has 4"):
        load_policies(ServerSettings(model_path=tmp_path / "flow", chunk_size=16))
    with pytest.raises(ConfigError, match=r"VLA_MODEL_TYPE=vla-ar but .* holds a vla-flow"):
        load_policies(ServerSettings(model_path=tmp_path / "flow", model_type="vla-ar"))
    with pytest.raises(UnknownNameError, match="unknown policy type 'pi0'"):
        load_policies(ServerSettings(model_type="pi0"))


def test_without_a_model_path_the_shipped_checkpoints_are_served() -> None:
    names = [p.info.name for p in load_policies(ServerSettings())]
    assert names == ["vla-flow-small", "vla-ar-small"]
    names = [p.info.name for p in load_policies(ServerSettings(model_type="vla-ar"))]
    assert names == ["vla-ar-small", "vla-flow-small"]
    # A shipped checkpoint also listed as an extra model is served once.
    for listed in (str(shipped_checkpoint("vla-ar-small")), "vla-ar-small"):  # path or name
        names = [p.info.name for p in load_policies(ServerSettings(extra_model_paths=listed))]
        assert names == ["vla-flow-small", "vla-ar-small"]
    with pytest.raises(ConfigError, match="cannot be used here"):
        load_policies(ServerSettings(extra_model_paths="grpc://127.0.0.1:1/m"))


def _vlarena(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlarena", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.slow
def test_serve_predict_health_and_sigterm(tmp_path: Path) -> None:
    FlowVLAPolicy.create(PRESETS["tiny"], "cli-flow").save(tmp_path / "ckpt")
    env = os.environ | {
        "VLA_MODEL_PATH": str(tmp_path / "ckpt"),
        "VLA_GRPC_PORT": "0",
        "VLA_METRICS_PORT": "0",
        "VLA_BATCH_SIZE": "2",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "vlarena", "serve"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stderr is not None
        port = ""
        for line in server.stderr:
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                port = match.group(1)
            if "warm after" in line:
                break
        target = f"127.0.0.1:{port}"
        health = _vlarena("health", "--target", target)
        assert health.returncode == 0, health.stdout + health.stderr
        assert "SERVING ready=True" in health.stdout
        png = tmp_path / "front.png"
        Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(png)
        ask = ["predict", "--target", target, "--instruction", "reach red", "--image", str(png)]
        result = _vlarena(*ask)
        assert result.returncode == 2  # the wrist camera is missing: refused, clearly
        assert "invalid_request" in result.stdout
        result = _vlarena(*ask, "--image", f"wrist={png}", "--seed", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "cli-flow: 4 actions" in result.stdout
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    down = _vlarena("health", "--target", target)
    assert down.returncode == 2
    assert "UNAVAILABLE" in down.stdout
