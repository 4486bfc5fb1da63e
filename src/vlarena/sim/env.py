"""A gymnasium environment over FrankaWorld, for users who drive it like any gym env."""

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from vlarena.sim.tasks import SuccessChecker, parse_instruction
from vlarena.sim.world import ARM_JOINTS, FrankaWorld

Obs = dict[str, Any]


class FrankaTableEnv(gym.Env[Obs, NDArray[np.float32]]):
    """Observation: camera images + 9 joint positions/velocities; action: 7 joint targets + grip.

    Reward is 1 on the step the task succeeds (which terminates the episode), else 0.
    `reset(options={"instruction": ...})` changes the task.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}  # type: ignore[misc]

    def __init__(
        self,
        scene_id: str = "table",
        instruction: str = "pick up the red cube",
        cameras: tuple[str, ...] = ("front", "wrist"),
        image_size: tuple[int, int] = (96, 96),
        max_steps: int = 100,
        render_mode: str | None = "rgb_array",
    ) -> None:
        self.world = FrankaWorld(scene_id)
        self.instruction = instruction
        self.cameras = cameras
        self.image_size = image_size
        self.max_steps = max_steps
        self.render_mode = render_mode
        low, high = self.world.model.jnt_range[:ARM_JOINTS].T
        self.action_space = gym.spaces.Box(
            np.append(low, 0.0).astype(np.float32), np.append(high, 1.0).astype(np.float32)
        )
        image = gym.spaces.Box(0, 255, (*image_size, 3), np.uint8)
        joints = gym.spaces.Box(-50.0, 50.0, (9,), np.float32)  # rad, m and their rates
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict(dict.fromkeys(cameras, image)),
                "joint_positions": joints,
                "joint_velocities": joints,
            }
        )
        self._checker = SuccessChecker(parse_instruction(instruction))
        self._steps = 0

    def _observation(self) -> Obs:
        h, w = self.image_size
        return {
            "images": {c: self.world.render(c, h, w) for c in self.cameras},
            "joint_positions": self.world.qpos.astype(np.float32),
            "joint_velocities": self.world.qvel.astype(np.float32),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "instruction" in options:
            self.instruction = str(options["instruction"])
        episode_seed = int(self.np_random.integers(2**31)) if seed is None else seed
        self.world.reset(episode_seed)
        task = parse_instruction(self.instruction)
        self._checker = SuccessChecker(task)
        self._checker.begin(self.world)
        self._steps = 0
        return self._observation(), {"task": task, "seed": episode_seed}

    def step(self, action: NDArray[np.float32]) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        self.world.step(np.asarray(action, dtype=np.float64))
        self._steps += 1
        success = self._checker(self.world)
        terminated = bool(success)
        truncated = self._steps >= self.max_steps and not terminated
        return self._observation(), float(terminated), terminated, truncated, {"success": success}

    def render(self) -> NDArray[np.uint8]:
        return self.world.render("front", 240, 320)

    def close(self) -> None:
        self.world.close()
