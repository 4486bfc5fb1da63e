"""Tasks parsed from the instruction, each with a success check on the simulator state."""

import re
from dataclasses import dataclass

import numpy as np

from vlarena.errors import InvalidObservationError
from vlarena.sim.world import BIN_SCENES, CUBE_HALF_M, FrankaWorld

TOUCH_DISTANCE_M = 0.045  # grip point to cube centre
PUSH_DISTANCE_M = 0.08  # displacement toward the named side
LIFT_HEIGHT_M = 0.08  # cube bottom above the table
STACK_XY_M = 0.025  # cube centre over the other cube's centre
NEXT_TO_M = (0.05, 0.12)  # centre distance band for "next to"
MOVED_M = 0.03  # "next to" only counts once the cube was moved (they may start that close)

_COLOR = "(?P<color>red|green|blue)"
_OTHER = "(?P<other>red|green|blue)"
_ARTICLE = r"(?:(?:the|a)\s+)?"
_CUBE = _ARTICLE + _COLOR + r"\s+(?:cube|block|box)\b"
_OTHER_CUBE = _ARTICLE + _OTHER + r"\s+(?:cube|block|box)\b"
# "pick up the red cube and put it on ..." is read as "put the red cube on ...".
_COMPOUND = re.compile(
    r"\b(?:pick up|pick|grab|lift|take)\s+"
    r"((?:(?:the|a)\s+)?(?:red|green|blue)\s+(?:cube|block|box))"
    r"\s+and\s+(put|place|drop|set|move|stack)\s+it\b"
)
_NEGATION = re.compile(r"\b(?:do not|don t|dont|never|avoid)\b")
# (kind, pattern); the first that matches wins. Paraphrases are alternatives in each pattern.
_TEMPLATES: list[tuple[str, str]] = [
    ("stack", rf"\b(?:put|place|stack|set)\s+{_CUBE}\s+(?:on top of|onto|on)\s+{_OTHER_CUBE}"),
    ("next_to", rf"\b(?:put|place|move|set)\s+{_CUBE}\s+(?:next to|beside|near)\s+{_OTHER_CUBE}"),
    ("bin", rf"\b(?:put|place|drop|move)\s+{_CUBE}\s+(?:in|into|inside)\s+the\s+bin\b"),
    ("lift", rf"\b(?:pick up|lift|grab|raise|pick)\s+{_CUBE}(?:\s+up)?"),
    (
        "push",
        rf"\b(?:push|slide|shove|move)\s+{_CUBE}\s+(?:to\s+the\s+)?(?P<side>left|right)\b"
        r"(?!\s+of\b)",
    ),
    ("touch", rf"\b(?:touch|reach(?:\s+for)?|go to|point at|tap)\s+{_CUBE}"),
]
KINDS = tuple(kind for kind, _ in _TEMPLATES)


@dataclass(frozen=True)
class Task:
    """What the instruction asks for; `kind` is None for free-form text (success unknown)."""

    kind: str | None  # one of KINDS
    color: str | None = None  # the cube acted on
    other: str | None = None  # stack / next_to: the reference cube
    side: str | None = None  # push: "left" (+y, the robot's left) or "right" (-y)


def check_scene(task: Task, scene_id: str) -> None:
    """Raise InvalidObservationError if the task needs what the scene lacks (a bin)."""
    if task.kind == "bin" and scene_id not in BIN_SCENES:
        raise InvalidObservationError(
            f"the instruction needs a bin; scene {scene_id!r} has none (use {BIN_SCENES})"
        )


def parse_instruction(text: str) -> Task:
    """Match the instruction against the task templates (case and punctuation ignored)."""
    normalized = re.sub(r"[^a-z ]+", " ", text.lower())
    normalized = re.sub(r"\s+", " ", normalized).strip()
    if _NEGATION.search(normalized):
        return Task(None)  # "do not touch the red cube" is no touch task
    normalized = _COMPOUND.sub(r"\2 \1", normalized)
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
    start: tuple[float, float] = (0.0, 0.0)  # the cube's xy at the start of the episode

    def begin(self, world: FrankaWorld) -> None:
        if self.task.color is not None:
            x, y, _ = world.cube(self.task.color).position
            self.start = (float(x), float(y))

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
            moved = cube[1] - self.start[1]
            return bool((moved if task.side == "left" else -moved) >= PUSH_DISTANCE_M)
        if task.kind == "lift":
            return bool(cube[2] - CUBE_HALF_M >= LIFT_HEIGHT_M and world.touching(task.color))
        if task.kind == "bin":
            bin_at = world.bin_position
            return bool(
                bin_at is not None
                and np.all(np.abs(cube[:2] - bin_at[:2]) < 0.07)
                and cube[2] < 0.06
            )
        assert task.other is not None
        other = world.cube(task.other).position
        gap = float(np.linalg.norm(cube[:2] - other[:2]))
        released = world.gripper_opening_m > 0.045 and not world.touching(task.color)
        if task.kind == "stack":
            on_top = abs(cube[2] - other[2] - 2 * CUBE_HALF_M) < 0.01
            return bool(gap < STACK_XY_M and on_top and released)
        resting = cube[2] < CUBE_HALF_M + 0.005
        moved = float(np.linalg.norm(cube[:2] - np.array(self.start))) >= MOVED_M
        return bool(NEXT_TO_M[0] <= gap <= NEXT_TO_M[1] and resting and released and moved)


# One instruction template per task, with the scene it needs ({a}, {b}: colours); for tests,
# benchmarks, UIs and docs.
EXAMPLES: list[tuple[str, str]] = [
    ("table", "touch the {a} cube"),
    ("table", "push the {a} cube to the left"),
    ("table", "push the {a} cube to the right"),
    ("table", "pick up the {a} cube"),
    ("table", "put the {a} cube on the {b} cube"),
    ("table", "put the {a} cube next to the {b} cube"),
    ("bin", "put the {a} cube in the bin"),
]


def scene_examples(scene_id: str) -> list[str]:
    """One example instruction per task the scene is made for, to start people off."""
    return [template.format(a="red", b="blue") for scene, template in EXAMPLES if scene == scene_id]
