"""LeRobot checkpoints measured inside the LeRobot environment (run by `benchmarks.lerobot`).

`python -m benchmarks.lerobot_env measure OUT.json SAMPLES` measures, per policy type, a tiny
random-weight checkpoint: the policy alone (our adapter, and LeRobot's own pipeline), our gRPC
server in front of it, and LeRobot's PolicyServer in front of it (each server its own process,
started here with `serve-ours` / `serve-lerobot`), then a full-size SmolVLA alone.
"""

import json
import os
import pickle  # LeRobot's PolicyServer protocol is pickle: our client of it, in this benchmark only
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import torch
from lerobot.async_inference.configs import PolicyServerConfig
from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from lerobot.transport import services_pb2, services_pb2_grpc
from lerobot.transport.utils import send_bytes_in_chunks
from lerobot.utils.feature_utils import hw_to_dataset_features

from benchmarks.common import time_calls
from vlarena.policies.lerobot import tiny
from vlarena.policies.specs import resolve_policy
from vlarena.policies.synthetic import synthetic_observation
from vlarena.serving.client import ClientOptions, VLAClient
from vlarena.testing import free_port, wait_for_http
from vlarena.types import Observation

JOINTS = [f"joint{i}.pos" for i in range(tiny.STATE_DIM)]
ROOT = Path(__file__).resolve().parents[1]
FULL_SMOLVLM = {  # SmolVLM2-500M-Video-Instruct, SmolVLA's VLM, as published
    "text_config": {
        "model_type": "llama", "vocab_size": 49280, "hidden_size": 960,
        "intermediate_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 15,
        "num_key_value_heads": 5, "rope_theta": 100000.0, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    },
    "vision_config": {
        "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
        "num_attention_heads": 12, "image_size": 512, "patch_size": 16,
    },
    "scale_factor": 4,
}  # fmt: skip


def serve_ours(path: str, grpc_port: str, http_port: str) -> None:
    """`vlarena serve` on one checkpoint (pi0 sizes made tiny first, as for its tests)."""
    from vlarena.cli import app

    os.environ.update(
        VLA_MODEL_PATH=path, VLA_GRPC_PORT=grpc_port, VLA_WEBSOCKET_PORT=http_port,
        VLA_METRICS_ENABLED="false", VLA_MAX_QUEUE_DELAY_MS="0",
    )  # fmt: skip
    with tiny.tiny_pi_sizes():
        app(["serve"])


def serve_lerobot(port: str) -> None:
    """LeRobot's own PolicyServer, with no artificial latency (it pads to 1/fps by default).
    Imported here: its module opens a log file under `logs/` in the working directory."""
    from lerobot.async_inference.policy_server import PolicyServer

    config = PolicyServerConfig(host="127.0.0.1", port=int(port), inference_latency=0.0)
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(4))
    services_pb2_grpc.add_AsyncInferenceServicer_to_server(PolicyServer(config), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    with tiny.tiny_pi_sizes():
        server.start()
        server.wait_for_termination()


def _process(scratch: Path, *args: str) -> subprocess.Popen[bytes]:
    """This module as a process, run from `scratch`: LeRobot's PolicyServer writes a `logs/`
    folder into its working directory."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.lerobot_env", *args],
        cwd=scratch,
        env=os.environ | {"PYTHONPATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def through_ours(path: Path, obs: Observation, samples: int) -> float:
    """Median round trip (ms) through our server, one robot."""
    grpc_port, http_port = free_port(), free_port()
    process = _process(path.parent, "serve-ours", str(path), str(grpc_port), str(http_port))
    try:
        wait_for_http(f"http://127.0.0.1:{http_port}/healthz", process, timeout_s=120)
        with VLAClient(ClientOptions(target=f"127.0.0.1:{grpc_port}")) as client:
            return time_calls(lambda: client.predict(obs, seed=0), samples).p50
    finally:
        _stop(process)


def through_lerobot(kind: str, path: Path, obs: Observation, samples: int) -> float | None:
    """Median round trip (ms) through LeRobot's PolicyServer, one robot, as its RobotClient
    makes one: send the observation (must go), then get the actions; None if none come back."""
    port = free_port()
    process = _process(path.parent, "serve-lerobot", str(port))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=120)
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        features = dict.fromkeys(JOINTS, float) | dict.fromkeys(obs.images, (64, 64, 3))
        setup = RemotePolicyConfig(
            kind, str(path), hw_to_dataset_features(features, "observation", use_video=False),
            actions_per_chunk=10,
        )  # fmt: skip
        stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(setup)))
        raw = dict(zip(JOINTS, obs.state.joint_positions.tolist(), strict=True))
        raw |= dict(obs.images) | {"task": obs.instruction}
        step = iter(range(1_000_000))

        def call() -> None:
            timed = TimedObservation(time.time(), next(step), raw, must_go=True)
            data = pickle.dumps(timed)
            stub.SendObservations(send_bytes_in_chunks(data, services_pb2.Observation))
            reply = stub.GetActions(services_pb2.Empty())
            if not reply.data:  # it logs the error and answers an empty message
                raise LookupError(f"LeRobot's PolicyServer returned no actions for {kind}")
            pickle.loads(reply.data)

        try:
            return time_calls(call, samples).p50
        except LookupError:
            return None
    finally:
        channel.close()
        _stop(process)


def lerobot_alone(kind: str, path: Path, obs: Observation) -> Callable[[], Any]:
    """One call of LeRobot's own pipeline (preprocessor, predict_action_chunk, postprocessor)."""
    policy = get_policy_class(kind).from_pretrained(str(path)).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(path))
    batch = {
        f"observation.images.{c}": torch.from_numpy(img).permute(2, 0, 1).float() / 255
        for c, img in obs.images.items()
    }
    batch["observation.state"] = torch.from_numpy(obs.state.joint_positions)

    steps = getattr(policy.config, "n_obs_steps", 1)

    def call() -> Any:
        with torch.inference_mode():
            inputs = pre(batch | {"task": obs.instruction})
            if kind == "diffusion":  # it takes n_obs_steps observations: the one, repeated
                inputs = {
                    k: v.unsqueeze(1).expand(-1, steps, *v.shape[1:])
                    if k.startswith("observation.")
                    else v
                    for k, v in inputs.items()
                }
            return post(policy.predict_action_chunk(inputs))

    return call


def measure_type(kind: str, root: Path, samples: int) -> dict[str, Any]:
    path = tiny.build(kind, root / kind)
    with tiny.tiny_pi_sizes():
        ours = resolve_policy(str(path))
        batch = [synthetic_observation(ours.info, seed=i) for i in range(4)]
        obs = batch[0]
        theirs = lerobot_alone(kind, path, obs)
    return {
        "type": kind,
        "params": ours.info.num_params,
        "split": ours.info.supports_split,
        "ours_alone_ms": time_calls(lambda: ours.predict([obs], [0]), samples).p50,
        "ours_batch4_ms": time_calls(lambda: ours.predict(batch, [0, 1, 2, 3]), samples).p50,
        "lerobot_alone_ms": time_calls(theirs, samples).p50,
        "ours_server_ms": through_ours(path, obs, samples),
        "lerobot_server_ms": through_lerobot(kind, path, obs, samples),
    }


def full_smolvla(root: Path, samples: int) -> dict[str, Any]:
    """SmolVLA at full size (SmolVLM2-500M, 16 of its layers, the released expert), random
    weights: latency does not depend on their values."""
    vlm = tiny.smolvlm(root / "smolvlm2-500m", FULL_SMOLVLM)
    path = tiny.build("smolvla", root / "smolvla-full", image_size=256, vlm=vlm)
    policy = resolve_policy(str(path))
    obs = synthetic_observation(policy.info, seed=0)
    timing = time_calls(lambda: policy.predict([obs], [0]), samples, warmup=1)
    return {
        "params": policy.info.num_params,
        "image": policy.info.image_height,
        "alone_ms": timing.p50,
        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def measure(out: str, samples: str) -> None:
    n = int(samples)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure_type(kind, Path(tmp), n) for kind in tiny.TYPES]
        full = full_smolvla(Path(tmp), max(3, n // 10))
    result = {"rows": rows, "full_smolvla": full, "torch": torch.__version__}
    Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    commands: dict[str, Callable[..., None]] = {
        "measure": measure, "serve-ours": serve_ours, "serve-lerobot": serve_lerobot,
    }  # fmt: skip
    commands[sys.argv[1]](*sys.argv[2:])
