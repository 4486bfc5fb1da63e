"""Instruction paraphrases per task: what demonstrations are labelled with.

Every paraphrase parses back to its task (tests check this), so the success check of an episode
never depends on which wording it was given.
"""

import numpy as np

from vlarena.sim.world import BIN_SCENES, COLORS

# (scene, kind, templates); {a}: the cube acted on, {b}: the reference cube.
TASK_TEMPLATES: list[tuple[str, str, tuple[str, ...]]] = [
    ("table", "touch", ("touch the {a} cube", "reach for the {a} block", "go to the {a} cube",
                        "tap the {a} box", "point at the {a} cube")),
    ("table", "push_left", ("push the {a} cube to the left", "slide the {a} block to the left",
                            "shove the {a} cube left")),
    ("table", "push_right", ("push the {a} cube to the right", "slide the {a} block to the right",
                             "shove the {a} cube right")),
    ("table", "lift", ("pick up the {a} cube", "lift the {a} block", "grab the {a} cube",
                       "raise the {a} box", "pick the {a} cube up")),
    ("table", "stack", ("put the {a} cube on the {b} cube",
                        "stack the {a} block on top of the {b} block",
                        "place the {a} cube onto the {b} cube",
                        "pick up the {a} cube and put it on the {b} cube")),
    ("table", "next_to", ("put the {a} cube next to the {b} cube",
                          "place the {a} block beside the {b} block",
                          "move the {a} cube near the {b} cube")),
    (BIN_SCENES[0], "bin", ("put the {a} cube in the bin", "drop the {a} block into the bin",
                            "place the {a} cube inside the bin")),
]  # fmt: skip
TASK_NAMES = tuple(name for _, name, _ in TASK_TEMPLATES)


def draw_instruction(rng: np.random.Generator, task: str) -> tuple[str, str]:
    """A random (scene, instruction) for the named task: random colours and wording."""
    scene, _, templates = next(t for t in TASK_TEMPLATES if t[1] == task)
    a, b = rng.choice(COLORS, size=2, replace=False)
    return scene, str(rng.choice(templates)).format(a=a, b=b)
