"""Tasks parsed from the instruction, each with a success check on the simulator state."""

import re
from dataclasses import dataclass

import numpy as np

from vlarena.sim.world import COLORS, CUBE_HALF_M, FrankaWorld

TOUCH_DISTANCE_M = 0.045  # grip point to cube centre
PUSH_DISTANCE_M = 0.08  # displacement toward the named side
LIFT_HEIGHT_M = 0.08  # cube bottom above the table
STACK_XY_M = 0.025  # cube centre over the other cube's centre
NEXT_TO_M = (0.05, 0.12)  # centre distance band for "next to"

_COLOR = "(?P<color>red|green|blue)"
_OTHER = "(?P<other>red|green|blue)"
_CUBE = r"(?:the\s+)?" + _COLOR + r"\s+(?:cube|block|box)"
_OTHER_CUBE = r"(?:the\s+)?" + _OTHER + r"\s+(?:cube|block|box)"
# (kind, pattern); the first that matches wins. Paraphrases are alternatives in each pattern.
_TEMPLATES: list[tuple[str, str]] = [
    ("stack", rf"(?:put|place|stack|set)\s+{_CUBE}\s+(?:on top of|onto|on)\s+{_OTHER_CUBE}"),
    ("next_to", rf"(?:put|place|move|set)\s+{_CUBE}\s+(?:next to|beside|near)\s+{_OTHER_CUBE}"),
    ("bin", rf"(?:put|place|drop|move)\s+{_CUBE}\s+(?:in|into|inside)\s+the\s+bin"),
    ("lift", rf"(?:pick up|lift|grab|raise|pick)\s+{_CUBE}(?:\s+up)?"),
    ("push", rf"(?:push|slide|shove|move)\s+{_CUBE}\s+(?:to\s+the\s+)?(?P<side>left|right)"),
    ("touch", rf"(?:touch|reach(?:\s+for)?|go to|point at|tap)\s+{_CUBE}"),
]
KINDS = tuple(kind for kind, _ in _TEMPLATES)


@dataclass(frozen=True)
class Task:
    """What the instruction asks for; `kind` is None for free-form text (success unknown)."""

    kind: str | None  # one of KINDS
    color: str | None = None  # the cube acted on
    other: str | None = None  # stack / next_to: the reference cube
    side: str | None = None  # push: "left" (+y, the robot's left) or "right" (-y)


def parse_instruction(text: str) -> Task:
    """Match the instruction against the task templates (case and punctuation ignored)."""
    normalized = re.sub(r"[^a-z ]+", " ", text.lower())
    normalized = re.sub(r"\s+", " ", normalized).strip()
    for kind, pattern in _TEMPLATES:
        match = re.search(pattern, normalized)
        if match is None:
            continue
        groups = match.groupdict()
        if groups.get("other") == groups["color"]:
            continue  # "put the red cube on the red cube" is not a task
        return Task(kind, groups["color"], groups.get("other"), groups.get("side"))
    return Task(None)


@dataclass
class SuccessChecker:
    """Checks one task on a world, remembering the start state it needs (push distance)."""

    task: Task
    start_y: float = 0.0

    def begin(self, world: FrankaWorld) -> None:
        if self.task.color is not None:
            self.start_y = float(world.cube(self.task.color).position[1])

    def __call__(self, world: FrankaWorld) -> bool | None:
        """True/False for a known task, None when the instruction matched no template."""
        task = self.task
        if task.kind is None or task.color is None:
            return None
        cube = world.cube(task.color).position
        if task.kind == "touch":
            near = np.linalg.norm(world.grip_position - cube) < TOUCH_DISTANCE_M
            return bool(near or world.touching(task.color))
        if task.kind == "push":
            moved = cube[1] - self.start_y
            return bool((moved if task.side == "left" else -moved) >= PUSH_DISTANCE_M)
        if task.kind == "lift":
            return bool(cube[2] - CUBE_HALF_M >= LIFT_HEIGHT_M and world.touching(task.color))
        if task.kind == "bin":
            bin_xy = world.data.body("bin").xpos[:2] if world.scene_id == "bin" else None
            return bool(bin_xy is not None and np.all(np.abs(cube[:2] - bin_xy) < 0.07)
                        and cube[2] < 0.06)  # fmt: skip
        assert task.other is not None
        other = world.cube(task.other).position
        gap = float(np.linalg.norm(cube[:2] - other[:2]))
        released = world.gripper_opening_m > 0.045 and not world.touching(task.color)
        if task.kind == "stack":
            on_top = abs(cube[2] - other[2] - 2 * CUBE_HALF_M) < 0.01
            return bool(gap < STACK_XY_M and on_top and released)
        resting = cube[2] < CUBE_HALF_M + 0.005
        return bool(NEXT_TO_M[0] <= gap <= NEXT_TO_M[1] and resting and released)


def describe(colors: tuple[str, ...] = COLORS) -> list[str]:
    """One example instruction per task kind (for UIs and docs)."""
    a, b = colors[0], colors[1]
    return [
        f"touch the {a} cube",
        f"push the {a} cube to the left",
        f"pick up the {a} cube",
        f"put the {a} cube on the {b} cube",
        f"put the {a} cube next to the {b} cube",
        f"put the {a} cube in the bin",
    ]
