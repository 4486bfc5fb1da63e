"""Where an episode's actions come from: a policy (in-process or behind the gRPC server: the
same code above that seam), a split policy on reused features or dual-rate, or the scripted
expert.

A controller's `prepare` runs on the simulation thread and reads what the model needs at this
step (it renders the cameras); the call it returns produces the chunk and may run on another
thread (the real-time runner runs it in the background while the world moves on).
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np

from vlarena.errors import InvalidObservationError
from vlarena.policies.base import Policy, SplitPolicy, VLFeatures
from vlarena.runtime import DualRateRuntime
from vlarena.sim.expert import ScriptedExpert
from vlarena.sim.tasks import Task
from vlarena.sim.world import CAMERAS, FrankaWorld
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState

ACTION_DIM = 8  # 7 arm joint targets + gripper
STATE_DIM = 9  # 7 arm joints + 2 finger slides
Produce = Callable[[], ActionChunk]  # makes a chunk from what `prepare` read
T = TypeVar("T")


class Controller(ABC):
    """Where an episode's actions come from."""

    @abstractmethod
    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        """Prepare for a new episode; returns the model id to record."""

    @abstractmethod
    def prepare(self, world: FrankaWorld, instruction: str, step: int) -> Produce:
        """Read what the model needs now (on the simulation thread); the call returned makes
        the chunk for this step and the ones after it (on any thread)."""

    def next_chunk(self, world: FrankaWorld, instruction: str, step: int) -> ActionChunk:
        """The actions to run next, now (executed open-loop up to the runner's horizon)."""
        return self.prepare(world, instruction, step)()

    def close(self) -> None:  # noqa: B027 (a no-op unless the controller holds something open)
        """Release what the controller holds open (a remote policy's connection)."""


class PolicyController(Controller):
    """Renders the model's cameras and asks a policy, in-process or remote (`RemotePolicy`)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._seed = 0

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        check_fits(self._policy.info, world)
        self._seed = seed
        return self._policy.info.name

    def prepare(self, world: FrankaWorld, instruction: str, step: int) -> Produce:
        obs = observe(world, self._policy.info, instruction)
        return partial(self._act, obs, self._seed * 1000 + step)  # noise seed: reproducible

    def _act(self, obs: Observation, seed: int) -> ActionChunk:
        return self._policy.predict([obs], [seed])[0]

    def close(self) -> None:
        self._policy.close()


def observe(world: FrankaWorld, info: ModelInfo, instruction: str) -> Observation:
    """What the model sees now: its cameras rendered, the robot's joints."""
    images = {c: world.render(c, info.image_height, info.image_width) for c in info.camera_names}
    return Observation(images, robot_state(world), instruction, "franka", world.time_s)


def robot_state(world: FrankaWorld) -> RobotState:
    """The robot's joint positions and velocities now."""
    return RobotState(world.qpos.astype(np.float32), world.qvel.astype(np.float32))


def check_fits(info: ModelInfo, world: FrankaWorld) -> None:
    """Raise InvalidObservationError unless the model can drive this robot in this scene."""
    problems = []
    if info.action_dim != ACTION_DIM or info.state_dim != STATE_DIM:
        problems.append(
            f"it has action_dim {info.action_dim} and state_dim {info.state_dim}, "
            f"the Panda needs {ACTION_DIM} and {STATE_DIM}"
        )
    if "franka" not in info.embodiments:
        problems.append(f"it supports {list(info.embodiments)}, not 'franka'")
    missing = sorted(set(info.camera_names) - set(CAMERAS))
    if missing:
        problems.append(f"it needs cameras {missing}; scene {world.scene_id!r} has {CAMERAS}")
    width, height = world.model.vis.global_.offwidth, world.model.vis.global_.offheight
    if info.image_width > width or info.image_height > height:
        problems.append(
            f"its {info.image_height}x{info.image_width} images exceed {height}x{width}"
        )
    if problems:
        raise InvalidObservationError(f"model {info.name!r} cannot run here: {'; '.join(problems)}")


class FeatureReuseController(Controller):
    """A split policy whose features refresh every `reuse` calls; every call acts on the cached
    features with the fresh joint state (the dual-rate schedule, in simulated time)."""

    def __init__(self, policy: SplitPolicy, info: ModelInfo, reuse: int) -> None:
        if reuse < 1:
            raise InvalidObservationError(f"reuse must be ≥ 1, got {reuse}")
        self._policy, self._info, self._reuse = policy, info, reuse
        self._features: VLFeatures | None = None
        self._calls = 0
        self._seed = 0

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        check_fits(self._info, world)
        self._features, self._calls, self._seed = None, 0, seed
        return self._info.name

    def prepare(self, world: FrankaWorld, instruction: str, step: int) -> Produce:
        refresh = self._calls % self._reuse == 0
        obs = observe(world, self._info, instruction) if refresh else None
        self._calls += 1
        return partial(self._act, obs, robot_state(world), self._seed * 1000 + step)

    def _act(self, obs: Observation | None, state: RobotState, seed: int) -> ActionChunk:
        if obs is not None:
            self._features = self._policy.extract_features([obs])
        assert self._features is not None  # call 0 always refreshes
        return self._policy.predict_from_features(self._features, [state], [seed])[0]


class DualRateController(Controller):
    """A split policy in dual-rate mode: features refresh in the background while the action
    expert answers every call at once from the newest ones (use with horizon=1, realtime=True)."""

    def __init__(self, runtime: DualRateRuntime) -> None:
        self._runtime = runtime
        self._seed = 0

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        info = self._runtime.policy.info
        check_fits(info, world)
        self._seed = seed
        self._runtime.reset()  # nothing of the previous episode's scene carries over
        return info.name

    def prepare(self, world: FrankaWorld, instruction: str, step: int) -> Produce:
        # The cameras are read at every step (cheap here), the features refresh at their rate.
        obs = observe(world, self._runtime.policy.info, instruction)
        return partial(self._act, obs, self._seed * 1000 + step)

    def _act(self, obs: Observation, seed: int) -> ActionChunk:
        out = self._runtime.step(obs.state, partial(_same, obs), seed)
        assert out.chunk is not None  # the default cold start waits for the first features
        return out.chunk


class ExpertController(Controller):
    """The scripted expert (privileged: it reads the simulator state), one action per call."""

    def __init__(self) -> None:
        self._expert: ScriptedExpert | None = None

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        self._expert = ScriptedExpert(world, task)
        return "scripted-expert"

    def prepare(self, world: FrankaWorld, instruction: str, step: int) -> Produce:
        assert self._expert is not None
        chunk = ActionChunk(self._expert.act()[None].astype(np.float32), "scripted-expert")
        return partial(_same, chunk)


def _same(value: T) -> T:
    return value
