"""The scripted expert plans from any state, not only the start: it can take over mid-episode."""

import mujoco
import numpy as np
import pytest

from vlarena.sim import ExpertController, FrankaWorld, run_episode
from vlarena.sim.expert import (
    OPEN_DWELL_STEPS,
    SAFE_Z,
    InverseKinematics,
    ScriptedExpert,
    plan,
)
from vlarena.sim.tasks import EXAMPLES, SuccessChecker, parse_instruction
from vlarena.sim.world import ARM_JOINTS

STATE = mujoco.mjtState.mjSTATE_INTEGRATION


def _takeover(world: FrankaWorld, checker: SuccessChecker, steps: int = 80) -> bool:
    """A fresh expert, planned from the world as it is now: does it finish the task?"""
    expert = ScriptedExpert(world, checker.task)
    for _ in range(steps):
        world.step(expert.act())
        if checker(world):
            return True
    return False


@pytest.mark.parametrize(
    ("scene", "instruction"),
    [
        ("table", "touch the blue cube"),
        ("table", "push the green cube to the left"),
        ("table", "push the red cube to the right"),
        ("table", "pick up the red cube"),
        ("table", "put the blue cube on the red cube"),
        ("table", "put the red cube next to the green cube"),
        ("bin", "put the green cube in the bin"),
    ],
)
def test_expert_takes_over_from_any_state_of_its_own_episode(scene: str, instruction: str) -> None:
    """From every 4th state of a demonstration (holding the cube, mid-push, just released...),
    a new expert that knows nothing of the first one's progress finishes the task."""
    world = FrankaWorld(scene)
    task = parse_instruction(instruction)
    states: list[np.ndarray] = []

    def save(_: int) -> None:
        state = np.empty(mujoco.mj_stateSize(world.model, STATE))
        mujoco.mj_getState(world.model, world.data, state, STATE)
        states.append(state)

    episode = run_episode(world, ExpertController(), instruction, 3, 120, on_step=save)
    assert episode.success
    world.reset(3)
    checker = SuccessChecker(task)
    checker.begin(world)
    for step, state in list(enumerate(states))[:-1:4]:
        mujoco.mj_setState(world.model, world.data, state, STATE)
        mujoco.mj_forward(world.model, world.data)
        assert _takeover(world, checker), (instruction, step)


def _drive_to(world: FrankaWorld, position: np.ndarray, gripper: float, steps: int = 25) -> None:
    """Move the grip point to `position` (pointing down) with the gripper at `gripper`."""
    ik = InverseKinematics(world)
    for _ in range(steps):
        joints = ik.solve(world.data.ctrl[:ARM_JOINTS], position, 0.0)
        world.step(np.append(joints, gripper))


def test_a_grasp_closed_beside_the_cube_is_retried() -> None:
    """The learned policies' typical failure: the fingers close on nothing, a few cm off the
    cube. The expert rises first (no diagonal sweep through the cube), reopens, grasps."""
    world = FrankaWorld("table")
    world.reset(7)
    task = parse_instruction("pick up the red cube")
    checker = SuccessChecker(task)
    checker.begin(world)
    cube = world.cube("red").position
    beside = cube + np.array([0.045, 0.0, 0.0])
    _drive_to(world, beside + np.array([0.0, 0.0, 0.1]), gripper=0.0)
    _drive_to(world, beside, gripper=0.0, steps=10)
    assert not world.touching("red")
    assert world.gripper_opening_m < 0.01
    waypoints = plan(world, task)
    first = waypoints[0]
    np.testing.assert_allclose(first.position[:2], world.grip_position[:2])  # straight up
    assert first.position[2] == pytest.approx(SAFE_Z)
    assert first.gripper == 1.0  # reopening on the way
    assert _takeover(world, checker)


def test_a_closed_gripper_above_its_cube_opens_before_going_down() -> None:
    world = FrankaWorld("table")
    world.reset(7)
    task = parse_instruction("pick up the red cube")
    checker = SuccessChecker(task)
    checker.begin(world)
    _drive_to(world, world.cube("red").position + np.array([0.0, 0.0, 0.03]), gripper=0.0)
    first = plan(world, task)[0]
    np.testing.assert_allclose(first.position[:2], world.grip_position[:2])  # no sideways move
    assert first.position[2] > world.grip_position[2]  # the closed fingertips rest on the cube
    assert (first.gripper, first.dwell_steps) == (1.0, OPEN_DWELL_STEPS)
    assert _takeover(world, checker)


@pytest.mark.parametrize(("scene", "template"), EXAMPLES)
def test_from_the_start_the_plan_is_the_full_one(scene: str, template: str) -> None:
    """The rules for later states never fire at the start (the demonstrations stay as they
    were), not even with a cube right under the home grip point."""
    world = FrankaWorld(scene)
    lengths = {"touch": 2, "push": 4, "lift": 5, "bin": 7, "stack": 8, "next_to": 8}
    for seed in range(3):
        world.reset(seed)
        task = parse_instruction(template.format(a="red", b="blue"))
        if seed == 2:  # the named cube under the grip point
            adr = world.model.joint("red_cube").qposadr[0]
            world.data.qpos[adr : adr + 2] = world.grip_position[:2]
            mujoco.mj_forward(world.model, world.data)
        waypoints = plan(world, task)
        assert task.kind is not None
        assert len(waypoints) == lengths[task.kind], (template, seed)
        assert waypoints[0].position[2] == SAFE_Z


def test_a_held_cube_is_carried_on_and_a_gripper_above_its_cube_goes_down() -> None:
    world = FrankaWorld("table")
    world.reset(2)
    task = parse_instruction("put the green cube on the blue cube")
    cube = world.cube("green").position
    start = plan(world, task)
    _drive_to(world, cube + np.array([0.0, 0.0, 0.06]), gripper=1.0)
    above = plan(world, task)
    assert len(above) == len(start) - 1  # no climb back to travel height first: down
    np.testing.assert_allclose(above[0].position, start[1].position, atol=1e-6)
    _drive_to(world, cube, gripper=1.0, steps=10)
    _drive_to(world, cube, gripper=0.0, steps=8)
    assert world.touching("green")
    held = plan(world, task)
    assert held[0].position[2] == 0.2
    assert held[0].gripper == 0.0
    assert len(held) == len(start) - 3  # the approach and grasp are done
    checker = SuccessChecker(task)
    checker.begin(world)
    assert _takeover(world, checker)
