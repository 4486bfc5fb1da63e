"""Instruction paraphrases per task: what demonstrations are labelled with, and what is not.

Every paraphrase parses back to its task (tests check this), so the success check of an episode
never depends on which wording it was given. The held-out wordings are never used for training
data: each recombines words the training wordings use (verb, noun, preposition) in a way they
never do, in mixed case and with punctuation, to measure whether grounding generalizes.
"""

import numpy as np

from vlarena.errors import UnknownNameError
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

# Per task; {A} / {B}: the colour capitalized.
HELD_OUT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "touch": ("Tap the {A} cube!", "Reach for the {a} box.", "Go to the {A} block",
              "Point at the {A} BLOCK"),
    "push_left": ("Push the {A} block to the left.", "Slide the {a} box left!",
                  "Shove the {a} block to the left", "Move the {A} cube to the left."),
    "push_right": ("Push the {A} block to the right.", "Slide the {a} box right!",
                   "Shove the {a} block to the right", "Move the {A} cube to the right."),
    "lift": ("Grab the {A} block.", "Lift the {a} box!", "Raise the {A} cube",
             "Pick up the {a} BLOCK"),
    "stack": ("Place the {A} block on the {B} block.", "Stack the {a} cube onto the {b} cube!",
              "Put the {A} box on top of the {B} box"),
    "next_to": ("Put the {A} block beside the {B} cube.", "Move the {a} box next to the {b} block!",
                "Place the {A} cube near the {B} cube"),
    "bin": ("Drop the {A} cube in the bin.", "Put the {a} block into the bin!",
            "Place the {A} box in the bin"),
}  # fmt: skip
WORDINGS = ("trained", "held-out")


def task_templates(task: str, wordings: str = "trained") -> tuple[str, tuple[str, ...]]:
    """(scene, templates) of a task in one wording split (WORDINGS)."""
    if wordings not in WORDINGS:
        raise UnknownNameError("wording split", wordings, WORDINGS)
    scene, _, templates = next(t for t in TASK_TEMPLATES if t[1] == task)
    return scene, templates if wordings == "trained" else HELD_OUT_TEMPLATES[task]


def fill(template: str, a: str, b: str) -> str:
    """A template with its colours filled in."""
    return template.format(a=a, b=b, A=a.capitalize(), B=b.capitalize())


def draw_instruction(rng: np.random.Generator, task: str) -> tuple[str, str]:
    """A random (scene, instruction) for the named task: random colours and wording."""
    scene, templates = task_templates(task)
    a, b = rng.choice(COLORS, size=2, replace=False)
    return scene, fill(str(rng.choice(templates)), a, b)
