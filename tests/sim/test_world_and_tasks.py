"""The MuJoCo world and the task templates with their success checks, on real physics."""

import numpy as np
import pytest

from vlarena.errors import UnknownNameError
from vlarena.sim import FrankaWorld, parse_instruction
from vlarena.sim.tasks import SuccessChecker, Task
from vlarena.sim.world import COLORS, MIN_CUBE_GAP_M


@pytest.fixture(scope="module")
def world() -> FrankaWorld:
    return FrankaWorld("table")


def test_scenes_load_and_unknown_scene_lists_valid() -> None:
    assert FrankaWorld("bin").model.body("bin").id > 0
    with pytest.raises(UnknownNameError, match="unknown scene 'kitchen'; valid: bin, table"):
        FrankaWorld("kitchen")


def test_same_seed_same_start_state(world: FrankaWorld) -> None:
    world.reset(7)
    first = world.data.qpos.copy()
    world.step(np.r_[world.qpos[:7] + 0.1, 0.0])
    world.reset(7)
    np.testing.assert_array_equal(world.data.qpos, first)
    other = FrankaWorld("table")
    other.reset(7)
    np.testing.assert_array_equal(other.data.qpos, first)
    world.reset(8)
    assert not np.array_equal(world.data.qpos, first)


@pytest.mark.parametrize("seed", range(20))
def test_cubes_are_placed_apart_and_at_rest(world: FrankaWorld, seed: int) -> None:
    world.reset(seed)
    positions = [world.cube(c).position for c in COLORS]
    for i in range(3):
        assert positions[i][2] == pytest.approx(0.02, abs=1e-3)
        for j in range(i):
            assert np.linalg.norm(positions[i][:2] - positions[j][:2]) >= MIN_CUBE_GAP_M


def test_step_moves_the_arm_and_rejects_bad_actions(world: FrankaWorld) -> None:
    world.reset(0)
    target = world.qpos[:7] + np.array([0.3, 0, 0, 0, 0, 0, 0])
    for _ in range(10):
        world.step(np.r_[target, 1.0])
    assert world.qpos[0] == pytest.approx(target[0], abs=0.02)
    assert world.time_s == pytest.approx(1.0)
    with pytest.raises(ValueError, match="8 finite values"):
        world.step(np.zeros(7))
    with pytest.raises(ValueError, match="8 finite values"):
        world.step(np.full(8, np.nan))


def test_render_both_cameras(world: FrankaWorld) -> None:
    world.reset(0)
    front = world.render("front", 48, 64)
    wrist = world.render("wrist", 48, 64)
    assert front.shape == wrist.shape == (48, 64, 3)
    assert front.dtype == np.uint8
    assert front.std() > 5
    assert wrist.std() > 5


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("touch the red cube", Task("touch", "red")),
        ("Reach for the GREEN block.", Task("touch", "green")),
        ("push the blue cube to the left", Task("push", "blue", side="left")),
        ("slide the red box right", Task("push", "red", side="right")),
        ("pick up the green cube", Task("lift", "green")),
        ("lift the blue block", Task("lift", "blue")),
        ("please grab the red cube", Task("lift", "red")),
        ("put the red cube on the blue cube", Task("stack", "red", "blue")),
        ("stack the green block on top of the red block", Task("stack", "green", "red")),
        ("place the blue cube next to the green cube", Task("next_to", "blue", "green")),
        ("put the red cube beside the blue cube", Task("next_to", "red", "blue")),
        ("drop the green cube into the bin", Task("bin", "green")),
        ("dance a little", Task(None)),
        ("pick up the red cube and put it on the blue cube", Task("stack", "red", "blue")),
        ("grab a green block and drop it into the bin", Task("bin", "green")),
        ("push the red cube to the left of the blue cube", Task(None)),
        ("do not touch the red cube", Task(None)),
        ("input the red cube on the blue cube", Task(None)),
        ("pick up a blue cube", Task("lift", "blue")),
        ("put the red cube on the red cube", Task(None)),
    ],
)
def test_parse_instruction(text: str, task: Task) -> None:
    assert parse_instruction(text) == task


def _place(world: FrankaWorld, color: str, xyz: tuple[float, float, float]) -> None:
    adr = world.model.joint(f"{color}_cube").qposadr[0]
    world.data.qpos[adr : adr + 7] = [*xyz, 1, 0, 0, 0]
    world.data.qvel[:] = 0
    for _ in range(3):  # let it settle
        world.step(np.r_[world.qpos[:7], 1.0])


@pytest.mark.parametrize(
    ("text", "arrange", "expected"),
    [
        ("stack the red cube on the blue cube", "stack", True),
        ("stack the red cube on the blue cube", None, False),
        ("put the red cube next to the blue cube", "beside", True),
        ("put the red cube next to the blue cube", "far", False),
        ("push the red cube to the left", "left", True),
        ("push the red cube to the right", "left", False),
        ("pick up the red cube", None, False),
        ("touch the red cube", None, False),
        ("describe the scene", None, None),
    ],
)
def test_success_checks(
    world: FrankaWorld, text: str, arrange: str | None, expected: bool | None
) -> None:
    world.reset(3)
    checker = SuccessChecker(parse_instruction(text))
    checker.begin(world)
    blue = world.cube("blue").position
    red = world.cube("red").position
    if arrange == "stack":
        _place(world, "red", (blue[0], blue[1], 0.062))
    elif arrange == "beside":
        _place(world, "red", (blue[0], blue[1] + 0.08, 0.02))
    elif arrange == "far":
        _place(world, "red", (blue[0], blue[1] + 0.25, 0.02))
    elif arrange == "left":
        _place(world, "red", (red[0], red[1] + 0.12, 0.02))
    assert checker(world) is expected


def test_next_to_needs_the_cube_moved(world: FrankaWorld) -> None:
    world.reset(3)
    blue = world.cube("blue").position
    _place(world, "red", (blue[0], blue[1] + 0.08, 0.02))  # already beside it at the start
    checker = SuccessChecker(parse_instruction("put the red cube next to the blue cube"))
    checker.begin(world)
    assert checker(world) is False


def test_bin_success(world: FrankaWorld) -> None:
    bin_world = FrankaWorld("bin")
    bin_world.reset(0)
    checker = SuccessChecker(parse_instruction("put the red cube in the bin"))
    assert checker(bin_world) is False
    bx, by = bin_world.data.body("bin").xpos[:2]
    _place(bin_world, "red", (bx, by, 0.03))
    assert checker(bin_world) is True
    assert SuccessChecker(parse_instruction("put the red cube in the bin"))(world) is False
