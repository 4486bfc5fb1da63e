"""LeRobot checkpoints through our loader: contract, batching, seeds, the pi0 split, errors."""

import json
import shutil
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from safetensors.torch import load_file, save_file

from vlarena.errors import CheckpointError, ConfigError, InvalidObservationError, UnknownNameError
from vlarena.policies import DeviceConfig, Policy, SplitPolicy, VLFeatures
from vlarena.policies.lerobot import tiny
from vlarena.policies.lerobot.adapter import LeRobotPolicy
from vlarena.policies.specs import parse_spec, resolve_policy
from vlarena.policies.synthetic import synthetic_observation
from vlarena.types import Observation

NOISY = ("smolvla", "pi0", "pi05")  # flow models: the seed draws the initial noise
CHUNKS = {"act": 10, "diffusion": 4, "smolvla": 10, "pi0": 10, "pi05": 10}


def load(path: Path, options: str = "") -> Policy:
    return resolve_policy(f"lerobot:{path}" + (f"#{options}" if options else ""))


def observations(policy: Policy, n: int) -> list[Observation]:
    return [synthetic_observation(policy.info, seed=i) for i in range(n)]


@pytest.mark.parametrize("kind", tiny.TYPES)
def test_the_contract_comes_from_the_checkpoint(kind: str, checkpoints: dict[str, Path]) -> None:
    spec = parse_spec(str(checkpoints[kind]))  # a plain path to one is recognised too
    assert spec.kind == "lerobot"
    policy = resolve_policy(spec)
    info = policy.info
    assert isinstance(policy, LeRobotPolicy)
    assert (info.name, info.policy_type) == (kind, f"lerobot-{kind}")
    assert info.camera_names == ("front", "wrist")
    assert (info.image_height, info.image_width) == (64, 64)
    assert (info.state_dim, info.action_dim, info.chunk_size) == (9, 8, CHUNKS[kind])
    assert info.supports_split == (kind == "pi0") == isinstance(policy, SplitPolicy)
    weights = sum(
        p.numel() for p in get_policy_class(kind).from_pretrained(spec.source).parameters()
    )
    assert info.num_params == weights
    assert json.loads(info.card)["trained"] == f"LeRobot {kind} checkpoint"


@pytest.mark.parametrize("kind", tiny.TYPES)
def test_a_batch_predicts_one_chunk_per_observation(
    kind: str, checkpoints: dict[str, Path]
) -> None:
    policy = load(checkpoints[kind])
    obs = observations(policy, 3)
    chunks = policy.predict(obs, [7, 8, 7])
    assert [c.actions.shape for c in chunks] == [(CHUNKS[kind], 8)] * 3
    assert all(c.batch_size == 3 and c.model_id == kind for c in chunks)
    assert all(np.isfinite(c.actions).all() and c.timing_ms["policy"] > 0 for c in chunks)
    assert not np.allclose(chunks[0].actions, chunks[1].actions)  # other image, other state
    if kind == "diffusion":
        return  # DDPM draws fresh noise at every step from torch's global generator
    alone = policy.predict(obs[:1], [7])[0]
    np.testing.assert_allclose(alone.actions, chunks[0].actions, atol=1e-4)  # batching is exact
    if kind in NOISY:
        other_seed = policy.predict(obs[:1], [9])[0]
        assert not np.allclose(other_seed.actions, alone.actions)


@pytest.mark.parametrize("kind", ["act", "smolvla"])
def test_it_matches_lerobot_called_directly(kind: str, checkpoints: dict[str, Path]) -> None:
    """Our mapping (cameras, pixels in [0, 1] CHW, joint positions, task) is LeRobot's input."""
    path = checkpoints[kind]
    policy = load(path)
    obs = synthetic_observation(policy.info, seed=3)
    ours = policy.predict([obs], [5])[0].actions

    theirs_policy = get_policy_class(kind).from_pretrained(str(path)).eval()
    pre, post = make_pre_post_processors(theirs_policy.config, pretrained_path=str(path))
    batch: dict[str, Any] = {
        f"observation.images.{c}": torch.from_numpy(obs.images[c]).permute(2, 0, 1).float() / 255
        for c in ("front", "wrist")
    }
    batch["observation.state"] = torch.from_numpy(obs.state.joint_positions)
    batch["task"] = obs.instruction
    noise = {"noise": torch.randn((10, 16), generator=torch.Generator().manual_seed(5))[None]}
    with torch.inference_mode():
        actions = theirs_policy.predict_action_chunk(
            pre(batch), **(noise if kind == "smolvla" else {})
        )
        theirs = post(actions[:, :10])[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_pi0_split_stages_give_the_full_prediction(checkpoints: dict[str, Path]) -> None:
    policy = load(checkpoints["pi0"])
    assert isinstance(policy, SplitPolicy)
    obs = observations(policy, 2)
    full = policy.predict(obs, [1, 2])
    features = policy.extract_features(obs)
    assert features.tokens.shape[0] == 2
    assert features.padding.shape == features.tokens.shape[:2]
    split = policy.predict_from_features(features, [o.state for o in obs], [1, 2])
    for a, b in zip(full, split, strict=True):
        np.testing.assert_allclose(a.actions, b.actions, atol=1e-5)
    # Cached features with a fresh state: the expert acts on the new state.
    moved = synthetic_observation(policy.info, seed=99).state
    reused = policy.predict_from_features(features.select(0), [moved], [1])[0]
    assert not np.allclose(reused.actions, full[0].actions)


def test_pi0_fast_stage_refuses_what_does_not_fit(checkpoints: dict[str, Path]) -> None:
    policy = load(checkpoints["pi0"])
    assert isinstance(policy, SplitPolicy)
    obs = observations(policy, 2)
    features = policy.extract_features(obs)
    with pytest.raises(InvalidObservationError, match="2 states for a feature batch of 1"):
        policy.predict_from_features(features.select(0), [o.state for o in obs])
    other = load(checkpoints["pi0"], "name=another-pi0")
    with pytest.raises(InvalidObservationError, match="not from model 'another-pi0'"):
        other.predict_from_features(features, [o.state for o in obs])  # type: ignore[attr-defined]
    wrong_joints = synthetic_observation(load(checkpoints["act"]).info, seed=0).state
    object.__setattr__(wrong_joints, "joint_positions", np.zeros(7, np.float32))
    object.__setattr__(wrong_joints, "joint_velocities", np.zeros(7, np.float32))
    with pytest.raises(InvalidObservationError, match="expects 9 joint values"):
        policy.predict_from_features(features.select(0), [wrong_joints])
    states = [o.state for o in obs]
    for tokens, padding in [
        (features.tokens.half(), features.padding),
        (features.tokens[..., :-1], features.padding),
        (features.tokens, features.padding.int()),
        (features.tokens, features.padding[:, :-1]),
    ]:
        bad = VLFeatures(tokens, padding, features.model_id)
        with pytest.raises(InvalidObservationError, match="do not fit model 'pi0'"):
            policy.predict_from_features(bad, states)


def test_cameras_map_to_ours(tmp_path: Path) -> None:
    path = tiny.build("act", tmp_path / "act", cameras=("top", "hand"))
    assert load(path).info.camera_names == ("top", "hand")  # unmapped: their names
    mapped = load(path, "front=top&wrist=hand&name=mapped&embodiment=so100")
    assert (mapped.info.camera_names, mapped.info.name) == (("front", "wrist"), "mapped")
    assert mapped.info.embodiments == ("so100",)
    obs = synthetic_observation(mapped.info, seed=1)
    assert mapped.predict([Observation(obs.images, obs.state, "go", "so100")])[0].actions.shape
    with pytest.raises(ConfigError, match=r"camera map names \['side'\].*\['top', 'hand'\]"):
        load(path, "front=side")
    clash = tiny.build("act", tmp_path / "clash", cameras=("top", "front"))
    with pytest.raises(ConfigError, match=r"the same name: \['front', 'front'\]"):
        load(clash, "front=top")


def test_an_imagenet_backbone_is_not_fetched(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """Real ACT and Diffusion configs name torchvision weights, which this machine cannot
    download (and which the checkpoint's own replace): the checkpoint loads without them."""
    for kind in ("act", "diffusion"):
        path = tmp_path / kind
        shutil.copytree(checkpoints[kind], path)
        config = json.loads((path / "config.json").read_text())
        config["pretrained_backbone_weights"] = "ResNet18_Weights.IMAGENET1K_V1"
        (path / "config.json").write_text(json.dumps(config))
        with mock.patch("torch.hub.load_state_dict_from_url", side_effect=OSError("offline")):
            ours = load(path)
        reference = load(checkpoints[kind])
        obs = synthetic_observation(ours.info, seed=2)
        if kind == "act":  # deterministic: the same weights give the same chunk
            np.testing.assert_array_equal(
                ours.predict([obs])[0].actions, reference.predict([obs])[0].actions
            )


def test_concurrent_calls_do_not_mix(checkpoints: dict[str, Path]) -> None:
    """The server's batcher and the dual-rate feature thread call one policy at once, and
    LeRobot's tokenizer step keeps the call in progress on itself: each call must get its own
    instruction's tokens (preprocessing is hammered: a model call hides the window)."""
    policy = load(checkpoints["pi0"])
    assert isinstance(policy, LeRobotPolicy)
    one = [synthetic_observation(policy.info, seed=1, instruction="touch the red cube")]
    three = [
        synthetic_observation(policy.info, seed=s, instruction="put the blue cube in the bin")
        for s in (2, 3, 4)
    ]
    key = "observation.language.tokens"
    expected = {len(batch): policy._preprocess(batch)[key] for batch in (one, three)}
    failures: list[int] = []

    def preprocess(batch: list[Observation]) -> None:
        for _ in range(1500):
            try:
                tokens = policy._preprocess(batch)[key]
            except Exception:  # another call's batch size under this one's tensors
                failures.append(-len(batch))
                continue
            if not torch.equal(tokens, expected[len(batch)]):
                failures.append(len(batch))

    threads = [threading.Thread(target=preprocess, args=(b,)) for b in (one, three, one)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_what_does_not_fit_fails_at_load_or_is_refused(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    policy = load(checkpoints["smolvla"])
    obs = synthetic_observation(policy.info, seed=0)
    small = {c: img[:32] for c, img in obs.images.items()}
    with pytest.raises(InvalidObservationError, match="is 32x64, model 'smolvla' expects 64x64"):
        policy.predict([Observation(small, obs.state, "go")])
    with pytest.raises(InvalidObservationError, match="expects cameras"):
        policy.predict([Observation({"front": obs.images["front"]}, obs.state, "go")])
    with pytest.raises(ConfigError, match="leave the precision at fp32"):
        resolve_policy(str(checkpoints["act"]), DeviceConfig(precision="bf16"))
    config = json.loads((checkpoints["act"] / "config.json").read_text())
    two_sizes = json.loads(json.dumps(config))
    two_sizes["input_features"]["observation.images.wrist"]["shape"] = [3, 32, 32]
    for name, changed, error, message in [
        ("vqbet", config | {"type": "vqbet"}, UnknownNameError, "LeRobot policy type 'vqbet'.*act"),
        ("sizes", two_sizes, ConfigError, r"images of shapes \[\(3, 32, 32\), \(3, 64, 64\)\]"),
    ]:
        broken = tmp_path / name
        shutil.copytree(checkpoints["act"], broken)
        (broken / "config.json").write_text(json.dumps(changed))
        with pytest.raises(error, match=message):
            load(broken)
    truncated = tmp_path / "truncated"
    shutil.copytree(checkpoints["act"], truncated)
    (truncated / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointError, match="LeRobot cannot load"):
        load(truncated)
    with pytest.raises(CheckpointError, match="is not a LeRobot checkpoint"):
        load(tmp_path / "nowhere")
    missing = tmp_path / "missing"
    shutil.copytree(checkpoints["pi0"], missing)
    weights = load_file(missing / "model.safetensors")
    del weights[next(k for k in weights if "action_out_proj" in k)]
    save_file(weights, missing / "model.safetensors")
    with pytest.raises(CheckpointError, match="weights are missing"):
        load(missing)  # LeRobot itself only warns, and fills the layer with random weights


def test_relative_actions_keep_each_call_whole(tmp_path: Path) -> None:
    """With relative actions the postprocessor adds back the state of the preprocessor's last
    call: concurrent calls must not mix their robots' states (nor split pi0 across them)."""
    policy = load(tiny.build("pi0", tmp_path / "pi0", use_relative_actions=True))
    assert not isinstance(policy, SplitPolicy)
    batches = [observations(policy, 1), observations(policy, 3)]
    expected = [[c.actions for c in policy.predict(b, list(range(len(b))))] for b in batches]
    failures: list[str] = []

    def call(index: int) -> None:
        batch = batches[index]
        for _ in range(40):
            try:
                chunks = policy.predict(batch, list(range(len(batch))))
            except Exception as exc:
                failures.append(repr(exc))
                continue
            if not all(
                np.allclose(c.actions, e, atol=1e-5)
                for c, e in zip(chunks, expected[index], strict=True)
            ):
                failures.append(f"batch of {len(batch)}")

    threads = [threading.Thread(target=call, args=(i % 2,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
