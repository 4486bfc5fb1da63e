"""A scripted expert per task: Cartesian waypoints, inverse kinematics on MuJoCo Jacobians.

The expert plans from whatever state the world is in, not only from the start state: a cube
already held is carried on, a gripper already above its cube goes straight down, a pusher
already behind its cube pushes. So it can take over from a learning policy mid-episode and
label the states that policy reaches (DAgger-style recovery data, `vlarena.training.dagger`).
"""

from dataclasses import dataclass

import mujoco
import numpy as np
from numpy.typing import NDArray

from vlarena.sim.tasks import Task
from vlarena.sim.world import ARM_JOINTS, CUBE_HALF_M, HOME_QPOS, FrankaWorld

OPEN, CLOSED = 1.0, 0.0
SAFE_Z = 0.16  # travel height of the grip point
CARRY_Z = 0.2  # height of the grip point while carrying a cube
MAX_STEP_M = 0.05  # Cartesian speed limit per control step (0.5 m/s at 10 Hz)
CARRY_STEP_M = 0.03  # slower while holding a cube
REACHED_M = 0.012  # a waypoint counts as reached within this distance
SETTLE_LIMIT = 8  # ...or after this many steps at it (contact can keep the grip point off)
ABOVE_M = 0.015  # the grip point is above a spot when this close to it in x and y
RISE_BELOW_M = 0.03  # lower than travel height by more than this, away from the spot: rise first
# Fingers touching a cube hold it when opened about its width: 4 cm across the faces, up to
# 5.7 cm across a diagonal (a gripper closed on nothing is near 0).
HELD_OPENING_M = (0.035, 0.06)
OPENED_M = 0.07  # the fingers count as open wider than this (fully open: 0.08)
OPEN_DWELL_STEPS = 3  # control steps to open the fingers in place...
OPEN_CLEAR_M = 0.04  # ...at least this high above the spot (closed fingertips on a cube's top
# cannot open)
PUSH_Z = 0.022  # height of the grip point while pushing
PUSH_BEHIND_M = (0.02, 0.1)  # a grip point at push height this far behind the cube's centre,
# in line with it, pushes


@dataclass(frozen=True)
class Waypoint:
    """Where the grip point should go, with what yaw and gripper, and how long to dwell."""

    position: tuple[float, float, float]
    yaw: float
    gripper: float
    dwell_steps: int = 0  # control steps to stay once reached (e.g. while the fingers close)


class InverseKinematics:
    """Damped least-squares IK for the grip site: position + gripper pointing down at a yaw."""

    def __init__(self, world: FrankaWorld, damping: float = 0.05) -> None:
        self._model = world.model
        self._data = mujoco.MjData(world.model)
        self._site = world.model.site("grip").id
        self._range = world.model.jnt_range[:ARM_JOINTS]
        self._damping = damping
        self._jacp = np.zeros((3, world.model.nv))
        self._jacr = np.zeros((3, world.model.nv))
        self._down = self._home_rotation()  # at home the grip points down

    def _home_rotation(self) -> NDArray[np.float64]:
        """The grip site's orientation at the home pose, whatever pose the arm is in now."""
        self._data.qpos[: len(HOME_QPOS)] = HOME_QPOS
        mujoco.mj_kinematics(self._model, self._data)
        return self._data.site_xmat[self._site].reshape(3, 3).copy()

    def solve(
        self, q: NDArray[np.float64], position: NDArray[np.float64], yaw: float
    ) -> NDArray[np.float64]:
        """Arm joint targets (7) reaching `position` from the start configuration `q`."""
        c, s = np.cos(yaw), np.sin(yaw)
        target_rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ self._down
        d = self._data
        d.qpos[:ARM_JOINTS] = q
        for _ in range(40):
            mujoco.mj_kinematics(self._model, d)
            mujoco.mj_comPos(self._model, d)
            rot = d.site_xmat[self._site].reshape(3, 3)
            err_pos = position - d.site_xpos[self._site]
            err_rot = 0.5 * sum(np.cross(rot[:, i], target_rot[:, i]) for i in range(3))
            if np.linalg.norm(err_pos) < 2e-4 and np.linalg.norm(err_rot) < 2e-3:
                break
            mujoco.mj_jacSite(self._model, d, self._jacp, self._jacr, self._site)
            jac = np.vstack([self._jacp[:, :ARM_JOINTS], self._jacr[:, :ARM_JOINTS]])
            err = np.concatenate([err_pos, err_rot])
            step = jac.T @ np.linalg.solve(jac @ jac.T + self._damping**2 * np.eye(6), err)
            d.qpos[:ARM_JOINTS] = np.clip(
                d.qpos[:ARM_JOINTS] + np.clip(step, -0.3, 0.3), *self._range.T
            )
        return d.qpos[:ARM_JOINTS].copy()


def _grasp_yaw(yaw: float) -> float:
    """Cube faces repeat every 90 degrees: pick the equivalent yaw nearest zero."""
    return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def plan(world: FrankaWorld, task: Task) -> list[Waypoint]:
    """The waypoints that solve `task` from the world's current state (empty: nothing to do)."""
    if task.kind is None or task.color is None:
        return []
    cube = world.cube(task.color)
    x, y, _ = cube.position
    yaw = _grasp_yaw(cube.yaw)
    grip = world.grip_position
    if task.kind == "touch":
        return _skip_done_approach(
            world, [Waypoint((x, y, SAFE_Z), yaw, OPEN), Waypoint((x, y, 0.05), yaw, OPEN, 3)]
        )
    if task.kind == "push":
        side = 1.0 if task.side == "left" else -1.0
        start, end = y - side * 0.075, y + side * 0.13
        push = [
            Waypoint((x, start, SAFE_Z), 0.0, CLOSED),
            Waypoint((x, start, PUSH_Z), 0.0, CLOSED),
            Waypoint((x, end, PUSH_Z), 0.0, CLOSED, 2),
            Waypoint((x, end, SAFE_Z), 0.0, CLOSED),
        ]
        behind = side * (y - grip[1])  # how far the grip point is behind the cube's centre
        in_line = abs(grip[0] - x) < ABOVE_M
        low = grip[2] < PUSH_Z + REACHED_M
        if low and in_line and PUSH_BEHIND_M[0] < behind < PUSH_BEHIND_M[1]:
            return push[2:]  # low, behind the cube, in line with it: push
        return _skip_done_approach(world, push)
    if _holding(world, task.color):
        # Carried on: straight up from where it is held, then on to the place.
        up = Waypoint((float(grip[0]), float(grip[1]), CARRY_Z), yaw, CLOSED)
        pick = [up] if grip[2] < SAFE_Z else []
    else:
        pick = _skip_done_approach(
            world,
            [
                Waypoint((x, y, SAFE_Z), yaw, OPEN),
                Waypoint((x, y, CUBE_HALF_M), yaw, OPEN, 1),
                Waypoint((x, y, CUBE_HALF_M), yaw, CLOSED, 5),
                Waypoint((x, y, CARRY_Z), yaw, CLOSED),
            ],
        )
    if task.kind == "lift":
        hold_x, hold_y = pick[-1].position[:2] if pick else grip[:2]
        return [*pick, Waypoint((float(hold_x), float(hold_y), CARRY_Z), yaw, CLOSED, 3)]
    if task.kind == "bin":
        bin_at = world.bin_position
        assert bin_at is not None  # check_scene refused the task in a scene without a bin
        bx, by = bin_at[:2]
        return [
            *pick,
            Waypoint((bx, by, CARRY_Z), 0.0, CLOSED),
            Waypoint((bx, by, 0.12), 0.0, CLOSED),
            Waypoint((bx, by, 0.12), 0.0, OPEN, 4),
        ]
    assert task.other is not None
    ox, oy, _ = world.cube(task.other).position
    if task.kind == "stack":
        place = (ox, oy, 3 * CUBE_HALF_M + 0.006)
        place_yaw = _grasp_yaw(world.cube(task.other).yaw)
    else:
        place = (*_free_spot_beside(world, task), CUBE_HALF_M + 0.004)
        place_yaw = yaw
    return [
        *pick,
        Waypoint((place[0], place[1], CARRY_Z), place_yaw, CLOSED),
        Waypoint(place, place_yaw, CLOSED, 1),
        Waypoint(place, place_yaw, OPEN, 4),
        Waypoint((place[0], place[1], SAFE_Z), place_yaw, OPEN),
    ]


def _holding(world: FrankaWorld, color: str) -> bool:
    """Whether the fingers hold the cube: touching it, closed to about its width."""
    low, high = HELD_OPENING_M
    return low < world.gripper_opening_m < high and world.touching(color)


def _skip_done_approach(world: FrankaWorld, points: list[Waypoint]) -> list[Waypoint]:
    """The approach to a spot from where the grip point is. `points` start at travel height
    above the spot, and the next one goes down to it.

    Already above the spot, between it and travel height: straight down, opening the fingers
    first (clear of the cube, rising if need be) if the next waypoint wants them open. Away
    from the spot and well below travel height: straight up first (opening or closing the
    fingers on the way), so the arm does not sweep a cube off the table on a diagonal.
    Otherwise: as planned from the start.
    """
    grip = world.grip_position
    above, then = points[0].position, points[1].position
    over = np.hypot(grip[0] - above[0], grip[1] - above[1]) < ABOVE_M
    if over and then[2] < grip[2] <= above[2] + REACHED_M:
        if points[1].gripper == OPEN and world.gripper_opening_m < OPENED_M:
            clear = (float(grip[0]), float(grip[1]), max(float(grip[2]), then[2] + OPEN_CLEAR_M))
            return [Waypoint(clear, points[1].yaw, OPEN, OPEN_DWELL_STEPS), *points[1:]]
        return points[1:]
    if grip[2] < above[2] - RISE_BELOW_M and not over:
        rise = Waypoint(
            (float(grip[0]), float(grip[1]), above[2]), points[0].yaw, points[0].gripper
        )
        return [rise, *points]
    return points


def _free_spot_beside(world: FrankaWorld, task: Task) -> tuple[float, float]:
    """A spot 8 cm from the reference cube, as far as possible from every other cube."""
    assert task.other is not None
    ref = world.cube(task.other).position[:2]
    others = [
        world.cube(c).position[:2]
        for c in ("red", "green", "blue")
        if c not in (task.color, task.other)
    ]
    candidates = [ref + 0.08 * np.array(d) for d in ((0, 1), (0, -1), (-1, 0), (1, 0))]
    reachable = [c for c in candidates if 0.3 <= c[0] <= 0.65 and abs(c[1]) <= 0.3]
    best = max(reachable, key=lambda c: min((np.linalg.norm(c - o) for o in others), default=1.0))
    return float(best[0]), float(best[1])


class ScriptedExpert:
    """Follows the plan for a task, one 8-dim action (joint targets + gripper) per call."""

    def __init__(self, world: FrankaWorld, task: Task) -> None:
        self._world = world
        self._ik = InverseKinematics(world)
        self._plan = plan(world, task)
        self._index = 0
        self._settle = 0  # control steps since the command arrived at the waypoint
        self._command = world.grip_position
        self._gripper = OPEN

    @property
    def done(self) -> bool:
        return self._index >= len(self._plan)

    def act(self) -> NDArray[np.float64]:
        world = self._world
        if self.done:
            return np.concatenate([world.data.ctrl[:ARM_JOINTS], [self._gripper]])
        point = self._plan[self._index]
        target = np.array(point.position)
        delta = target - self._command
        distance = float(np.linalg.norm(delta))
        limit = CARRY_STEP_M if point.gripper == CLOSED else MAX_STEP_M
        if distance <= limit:
            self._command = target
        else:
            self._command = self._command + delta * limit / distance
        self._gripper = point.gripper
        joints = self._ik.solve(world.data.ctrl[:ARM_JOINTS], self._command, point.yaw)
        if distance <= limit:
            self._settle += 1
            close = np.linalg.norm(world.grip_position - target) < REACHED_M
            if (close or self._settle > SETTLE_LIMIT) and self._settle > point.dwell_steps:
                self._index += 1
                self._settle = 0
        return np.concatenate([joints, [self._gripper]])
