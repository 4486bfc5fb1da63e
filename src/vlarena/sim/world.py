"""The simulated world: the Franka Panda, a table scene, its cubes, control and rendering."""

import functools
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np
from numpy.typing import NDArray

from vlarena.errors import UnknownNameError

ASSETS = Path(__file__).parent / "assets"
SCENES = {"table": ASSETS / "table.xml", "bin": ASSETS / "bin.xml"}
BIN_SCENES = ("bin",)  # scenes with a bin (the "put ... in the bin" task)
CAMERAS = ("front", "wrist")
ROBOTS = ("franka",)
COLORS = ("red", "green", "blue")
ARM_JOINTS = 7
HOME_QPOS = np.array([0.0, 0.2, 0.0, -2.2, 0.0, 2.4, 0.785, 0.04, 0.04])
CUBE_HALF_M = 0.02
CONTROL_HZ = 10.0  # one action per 0.1 s of simulated time
INTERPOLATION_SLICES = 10  # joint targets are ramped in this many slices per control period
SPAWN_X = (0.38, 0.58)  # cube centres are drawn in this box on the table (metres)
SPAWN_Y = (-0.2, 0.16)
MIN_CUBE_GAP_M = 0.09


@dataclass(frozen=True)
class CubePose:
    """A cube's position (m) and yaw (rad) in the world frame."""

    position: NDArray[np.float64]
    yaw: float


class FrankaWorld:
    """One MuJoCo scene with the Panda: reset from a seed, act at CONTROL_HZ, read, render.

    Action (8 values): 7 arm joint position targets (rad) and the gripper opening in [0, 1]
    (0 closed, 1 open). Proprioception: the 9 robot joint positions and velocities (7 arm joints
    and 2 finger slides).
    """

    def __init__(self, scene_id: str = "table") -> None:
        if scene_id not in SCENES:
            raise UnknownNameError("scene", scene_id, SCENES)
        self.scene_id = scene_id
        self.model = mujoco.MjModel.from_xml_path(str(SCENES[scene_id]))
        self.data = mujoco.MjData(self.model)
        self.substeps = round(1.0 / (CONTROL_HZ * self.model.opt.timestep))
        self._grip_site = self.model.site("grip").id
        self._cube_joints = {c: self.model.joint(f"{c}_cube").qposadr[0] for c in COLORS}
        self._cube_bodies = {c: self.model.body(f"{c}_cube").id for c in COLORS}
        self._arm_range = self.model.jnt_range[:ARM_JOINTS].copy()
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    def reset(self, seed: int) -> None:
        """Home the arm and place the cubes at random non-overlapping poses drawn from `seed`."""
        rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:9] = HOME_QPOS
        self.data.ctrl[:ARM_JOINTS] = HOME_QPOS[:ARM_JOINTS]
        self.data.ctrl[ARM_JOINTS] = 255.0
        placed: list[NDArray[np.float64]] = []
        for color in COLORS:
            while True:
                xy = np.array([rng.uniform(*SPAWN_X), rng.uniform(*SPAWN_Y)])
                if all(np.linalg.norm(xy - other) >= MIN_CUBE_GAP_M for other in placed):
                    break
            placed.append(xy)
            yaw = rng.uniform(-np.pi / 4, np.pi / 4)
            adr = self._cube_joints[color]
            self.data.qpos[adr : adr + 3] = [xy[0], xy[1], CUBE_HALF_M]
            self.data.qpos[adr + 3 : adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        mujoco.mj_forward(self.model, self.data)

    def step(self, action: NDArray[np.float64]) -> NDArray[np.float64]:
        """Apply one 8-dim action for 1/CONTROL_HZ seconds; returns it as applied (clipped)."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ARM_JOINTS + 1,) or not np.isfinite(action).all():
            raise ValueError(f"action must be 8 finite values, got shape {action.shape}")
        start = self.data.ctrl[:ARM_JOINTS].copy()
        goal = np.clip(action[:ARM_JOINTS], *self._arm_range.T)
        grip = float(np.clip(action[ARM_JOINTS], 0.0, 1.0))
        self.data.ctrl[ARM_JOINTS] = 255.0 * grip
        # Like a robot's trajectory interpolator: ramp the joint targets over the control period
        # instead of jumping, so a held object is not shaken loose.
        chunk = self.substeps // INTERPOLATION_SLICES
        for i in range(1, INTERPOLATION_SLICES + 1):
            self.data.ctrl[:ARM_JOINTS] = start + (goal - start) * i / INTERPOLATION_SLICES
            mujoco.mj_step(self.model, self.data, nstep=chunk)
        return np.append(goal, grip)

    @property
    def qpos(self) -> NDArray[np.float64]:
        """Robot joint positions (9)."""
        return self.data.qpos[:9].copy()

    @property
    def qvel(self) -> NDArray[np.float64]:
        """Robot joint velocities (9)."""
        return self.data.qvel[:9].copy()

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    @property
    def grip_position(self) -> NDArray[np.float64]:
        """The point between the fingertips, in the world frame."""
        return self.data.site_xpos[self._grip_site].copy()

    @property
    def bin_position(self) -> NDArray[np.float64] | None:
        """The centre of the bin's floor, in the world frame; None in a scene without a bin."""
        return self.data.body("bin").xpos.copy() if self.scene_id in BIN_SCENES else None

    @property
    def gripper_opening_m(self) -> float:
        return float(self.data.qpos[7] + self.data.qpos[8])

    def cube(self, color: str) -> CubePose:
        body = self._cube_bodies[color]
        quat = self.data.xquat[body]
        yaw = float(
            np.arctan2(
                2 * (quat[0] * quat[3] + quat[1] * quat[2]), 1 - 2 * (quat[2] ** 2 + quat[3] ** 2)
            )
        )
        return CubePose(self.data.xpos[body].copy(), yaw)

    def touching(self, color: str) -> bool:
        """Whether any finger geom touches the cube."""
        cube_geom = self.model.geom(f"{color}_cube").id
        fingers = {self.model.body("left_finger").id, self.model.body("right_finger").id}
        for contact in self.data.contact[: self.data.ncon]:
            pair = {contact.geom1, contact.geom2}
            if cube_geom in pair:
                other = (pair - {cube_geom}).pop() if len(pair) == 2 else cube_geom
                if self.model.geom_bodyid[other] in fingers:
                    return True
        return False

    def render(self, camera: str, height: int, width: int) -> NDArray[np.uint8]:
        """An RGB image from a named camera (offscreen; MUJOCO_GL=egl when headless)."""
        key = (height, width)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.model, height, width)
        renderer = self._renderers[key]
        renderer.update_scene(self.data, camera=camera)
        return renderer.render().copy()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


@functools.cache
def shared_world(scene_id: str) -> FrankaWorld:
    """One world per scene and process, reused across episodes (worker processes; one episode
    at a time: stepped by one thread only, though any thread may read its model)."""
    return FrankaWorld(scene_id)
