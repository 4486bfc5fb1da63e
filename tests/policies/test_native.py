"""The two native VLA families, run for real on the `tiny` preset."""

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from vlarena import InvalidObservationError, Observation, RobotState
from vlarena.policies import (
    PRESETS,
    AutoregressiveVLAPolicy,
    DeviceConfig,
    FlowVLAPolicy,
    NativeVLAPolicy,
    NormStats,
    get_policy_type,
    load_policy,
)
from vlarena.policies.networks.tokenizer import encode_text

MakeObs = Callable[..., Observation]
TINY = PRESETS["tiny"]


def test_shapes_dtypes_and_info(tiny_policy: NativeVLAPolicy, make_obs: MakeObs) -> None:
    info = tiny_policy.info
    chunks = tiny_policy.predict([make_obs(info, seed=s) for s in range(3)])
    assert len(chunks) == 3
    for chunk in chunks:
        assert chunk.actions.shape == (TINY.chunk_size, TINY.action_dim)
        assert chunk.actions.dtype == np.float32
        assert np.isfinite(chunk.actions).all()
        assert chunk.timing_ms["policy"] > 0
        assert chunk.model_id == info.name
    assert info.supports_split
    assert 0 < info.num_params < 1_000_000
    assert info.camera_names == ("front", "wrist")


def test_flow_is_deterministic_under_a_seed(make_obs: MakeObs) -> None:
    policy = FlowVLAPolicy.create(TINY, "flow", seed=0)
    obs = [make_obs(policy.info)]
    first = policy.predict(obs, seeds=[7])[0].actions
    np.testing.assert_array_equal(first, policy.predict(obs, seeds=[7])[0].actions)
    assert not np.allclose(first, policy.predict(obs, seeds=[8])[0].actions)
    same_init = FlowVLAPolicy.create(TINY, "flow", seed=0)
    np.testing.assert_array_equal(first, same_init.predict(obs, seeds=[7])[0].actions)


def test_ar_median_decoding_is_deterministic_and_sampling_follows_seed(make_obs: MakeObs) -> None:
    median = AutoregressiveVLAPolicy.create(TINY, "ar", seed=0)
    obs = [make_obs(median.info)]
    np.testing.assert_array_equal(
        median.predict(obs, seeds=[1])[0].actions, median.predict(obs, seeds=[2])[0].actions
    )
    hot = dataclasses.replace(TINY, expert=dataclasses.replace(TINY.expert, temperature=5.0))
    sampler = AutoregressiveVLAPolicy.create(hot, "ar-hot", seed=0)
    a = sampler.predict(obs, seeds=[1])[0]
    np.testing.assert_array_equal(a.actions, sampler.predict(obs, seeds=[1])[0].actions)
    assert not np.array_equal(a.actions, sampler.predict(obs, seeds=[2])[0].actions)
    assert a.confidence is not None
    assert 0.0 < a.confidence <= 1.0


def test_different_instructions_give_different_actions(
    tiny_policy: NativeVLAPolicy, make_obs: MakeObs
) -> None:
    info = tiny_policy.info
    red = tiny_policy.predict([make_obs(info, instruction="red")], seeds=[0])[0].actions
    blue = tiny_policy.predict([make_obs(info, instruction="blue")], seeds=[0])[0].actions
    assert not np.array_equal(red, blue)


def test_batch_equals_single_calls(tiny_policy: NativeVLAPolicy, make_obs: MakeObs) -> None:
    texts = ["pick up the red cube", "touch green", "push the blue cube to the left side"]
    obs = [make_obs(tiny_policy.info, seed=i, instruction=t) for i, t in enumerate(texts)]
    batch = tiny_policy.predict(obs, seeds=[10, 11, 12])
    for i, o in enumerate(obs):
        single = tiny_policy.predict([o], seeds=[10 + i])[0]
        np.testing.assert_allclose(batch[i].actions, single.actions, atol=1e-4)


def test_split_api_equals_predict(tiny_policy: NativeVLAPolicy, make_obs: MakeObs) -> None:
    obs = [make_obs(tiny_policy.info, seed=i) for i in range(2)]
    features = tiny_policy.extract_features(obs)
    assert features.batch_size == 2
    split = tiny_policy.predict_from_features(features, [o.state for o in obs], seeds=[3, 4])
    full = tiny_policy.predict(obs, seeds=[3, 4])
    for s, f in zip(split, full, strict=True):
        np.testing.assert_allclose(s.actions, f.actions, atol=1e-5)
    # Reusing the features of element 0 with the state of element 1 changes the actions.
    reused = tiny_policy.predict_from_features(features.select(0), [obs[1].state], seeds=[3])
    assert not np.array_equal(reused[0].actions, split[0].actions)


def test_save_load_round_trip(
    tiny_policy: NativeVLAPolicy, make_obs: MakeObs, tmp_path: Path
) -> None:
    tiny_policy.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json",
        "metadata.json",
        "model.safetensors",
        "norm_stats.json",
    ]
    loaded = load_policy(tmp_path / "ckpt")
    assert type(loaded) is type(tiny_policy)
    assert loaded.info == tiny_policy.info
    obs = [make_obs(tiny_policy.info, seed=5)]
    np.testing.assert_array_equal(
        loaded.predict(obs, seeds=[0])[0].actions, tiny_policy.predict(obs, seeds=[0])[0].actions
    )


def test_norm_stats_scale_actions(make_obs: MakeObs) -> None:
    base = FlowVLAPolicy.create(TINY, "flow", seed=0)
    d = TINY.action_dim
    stats = NormStats.identity(TINY.state_dim, d)
    stats = dataclasses.replace(stats, action_std=(10.0,) * d, action_mean=(5.0,) * d)
    scaled = FlowVLAPolicy.create(TINY, "flow", seed=0, norm_stats=stats)
    obs = [make_obs(base.info)]
    np.testing.assert_allclose(
        scaled.predict(obs, seeds=[0])[0].actions,
        base.predict(obs, seeds=[0])[0].actions * 10 + 5,
        rtol=1e-4,
        atol=1e-4,
    )


def test_two_policies_loaded_at_once_stay_independent(make_obs: MakeObs) -> None:
    a = FlowVLAPolicy.create(TINY, "a", seed=1)
    b = AutoregressiveVLAPolicy.create(TINY, "b", seed=2)
    obs = [make_obs(a.info)]
    before = a.predict(obs, seeds=[0])[0].actions
    b.predict(obs)
    np.testing.assert_array_equal(before, a.predict(obs, seeds=[0])[0].actions)
    with pytest.raises(InvalidObservationError, match="features come from 'a'"):
        b.predict_from_features(a.extract_features(obs), [obs[0].state])
    a_half = FlowVLAPolicy.create(TINY, "a", seed=1, device=DeviceConfig(precision="bf16"))
    with pytest.raises(InvalidObservationError, match=r"do not fit model 'a'.*bfloat16"):
        a_half.predict_from_features(a.extract_features(obs), [obs[0].state])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p, o: p.predict([]), "empty batch"),
        (lambda p, o: p.predict(o), "must be a list of Observation"),
        (lambda p, o: p.predict([o, "x"]), "every item of observations must be"),
        (lambda p, o: p.predict([o], seeds=[1, 2]), "a list of 1"),
        (lambda p, o: p.predict([o], seeds=["1"]), "not an integer"),
        (lambda p, o: p.predict([o], seeds=[True]), "not an integer"),
        (lambda p, o: p.predict([o], seeds=[1.5]), "not an integer"),
        (lambda p, o: p.predict([o], seeds=[2**70]), "not an integer"),
        (lambda p, o: p.predict([o], seeds=[-1]), "not an integer"),
        (lambda p, o: p.predict_from_features(p.extract_features([o]), []), "empty batch"),
        (lambda p, o: p.predict_from_features(p.extract_features([o]), [o]), "must be a Robot"),
        (lambda p, o: p.predict_from_features("features", [o.state]), "features come from"),
        (
            lambda p, o: p.predict_from_features(
                p.extract_features([o]),
                [RobotState(np.zeros(1, np.float32), np.zeros(1, np.float32))],
            ),
            "expects 9 joint values",
        ),
        (
            lambda p, o: p.predict([Observation({"front": o.images["front"]}, o.state, "x")]),
            "expects cameras",
        ),
    ],
)
def test_error_paths(
    tiny_policy: NativeVLAPolicy,
    make_obs: MakeObs,
    call: Callable[[NativeVLAPolicy, Observation], object],
    message: str,
) -> None:
    with pytest.raises(InvalidObservationError, match=message):
        call(tiny_policy, make_obs(tiny_policy.info))


def test_sensor_window_input(family: str, make_obs: MakeObs) -> None:
    config = dataclasses.replace(TINY, sensor_window=65, sensor_dim=6)
    cls = get_policy_type(family)
    assert issubclass(cls, NativeVLAPolicy)
    policy = cls.create(config, "sensed")
    obs = make_obs(policy.info)
    assert obs.state.sensor_window is not None
    chunk = policy.predict([obs], seeds=[0])[0]
    louder = RobotState(
        obs.state.joint_positions, obs.state.joint_velocities, obs.state.sensor_window * 10
    )
    features = policy.extract_features([obs])
    other = policy.predict_from_features(features, [louder], seeds=[0])[0]
    # Median AR decoding may keep its bins; its confidence still moves.
    assert not np.array_equal(chunk.actions, other.actions) or chunk.confidence != other.confidence
    no_sensor = RobotState(obs.state.joint_positions, obs.state.joint_velocities)
    with pytest.raises(InvalidObservationError, match="needs a sensor_window"):
        policy.predict_from_features(features, [no_sensor])


def test_five_camera_views(make_obs: MakeObs) -> None:
    views = ("front", "left", "right", "top", "wrist")
    config = dataclasses.replace(
        TINY, backbone=dataclasses.replace(TINY.backbone, camera_names=views)
    )
    policy = FlowVLAPolicy.create(config, "five")
    obs = make_obs(policy.info)
    assert tuple(obs.images) == views
    features = policy.extract_features([obs])
    tokens = len(views) * TINY.backbone.tokens_per_camera + TINY.backbone.max_text_len
    assert features.tokens.shape == (1, tokens, TINY.backbone.d_model)
    assert policy.predict([obs])[0].actions.shape == (TINY.chunk_size, TINY.action_dim)


def test_training_steps_lower_the_loss(family: str, make_obs: MakeObs) -> None:
    cls = get_policy_type(family)
    assert issubclass(cls, NativeVLAPolicy)
    model = cls.create(TINY, "train", seed=0).model.train()
    info = cls.create(TINY, "info").info
    obs = [make_obs(info, seed=i) for i in range(4)]
    images = torch.from_numpy(np.stack([np.stack(list(o.images.values())) for o in obs]))
    ids, pad = encode_text([o.instruction for o in obs], TINY.backbone.max_text_len)
    state = torch.from_numpy(
        np.stack([np.concatenate([o.state.joint_positions, o.state.joint_velocities]) for o in obs])
    )
    target = torch.rand(4, TINY.chunk_size, TINY.action_dim) * 2 - 1
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)

    def step() -> float:
        tokens, padding = model.features(images, ids, pad)
        loss = model.loss(model.condition(tokens, padding, state, None), target, state)
        optim.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optim.step()
        return loss.item()

    first = np.mean([step() for _ in range(3)])
    for _ in range(40):
        step()
    last = np.mean([step() for _ in range(3)])
    assert last < 0.7 * first


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs(family: str, precision: str, make_obs: MakeObs) -> None:
    cls = get_policy_type(family)
    assert issubclass(cls, NativeVLAPolicy)
    full = cls.create(TINY, "p", seed=0)
    half = cls.create(TINY, "p", seed=0, device=DeviceConfig(precision=precision))
    assert next(half.model.backbone.parameters()).dtype == DeviceConfig(precision=precision).dtype
    obs = [make_obs(full.info)]
    low = half.predict(obs, seeds=[0])[0].actions
    assert low.dtype == np.float32
    assert np.isfinite(low).all()
    if family == "vla-flow":  # AR tokens may flip bins under rounding; flow stays close
        np.testing.assert_allclose(low, full.predict(obs, seeds=[0])[0].actions, atol=0.25)


@pytest.mark.parametrize("family_cls", [FlowVLAPolicy, AutoregressiveVLAPolicy])
def test_preset_sizes(family_cls: type[NativeVLAPolicy]) -> None:
    assert family_cls.parameter_count(PRESETS["tiny"]) < 1_000_000
    assert 1_000_000 < family_cls.parameter_count(PRESETS["small"]) < 5_000_000
    assert 2.5e9 < family_cls.parameter_count(PRESETS["pi0-scale"]) < 3.5e9


@pytest.mark.slow
def test_torch_compile_matches_eager(make_obs: MakeObs) -> None:
    eager = FlowVLAPolicy.create(TINY, "c", seed=0)
    compiled = FlowVLAPolicy.create(TINY, "c", seed=0, device=DeviceConfig(compile=True))
    obs = [make_obs(eager.info)]
    np.testing.assert_allclose(
        compiled.predict(obs, seeds=[0])[0].actions,
        eager.predict(obs, seeds=[0])[0].actions,
        atol=1e-4,
    )
