"""MuJoCo simulation of the Franka Panda: scenes, tasks, scripted expert, gym env, episodes."""

import os
import sys

# Before any module here imports mujoco: headless, it renders offscreen through EGL.
if sys.platform.startswith("linux") and "DISPLAY" not in os.environ:
    os.environ.setdefault("MUJOCO_GL", "egl")

from vlarena.sim.controllers import (
    Controller,
    DualRateController,
    ExpertController,
    FeatureReuseController,
    PolicyController,
)
from vlarena.sim.env import FrankaTableEnv
from vlarena.sim.expert import ScriptedExpert
from vlarena.sim.runner import Episode, StepRecord, run_episode
from vlarena.sim.tasks import Task, parse_instruction
from vlarena.sim.world import COLORS, ROBOTS, SCENES, FrankaWorld

__all__ = [
    "COLORS",
    "ROBOTS",
    "SCENES",
    "Controller",
    "DualRateController",
    "Episode",
    "ExpertController",
    "FeatureReuseController",
    "FrankaTableEnv",
    "FrankaWorld",
    "PolicyController",
    "ScriptedExpert",
    "StepRecord",
    "Task",
    "parse_instruction",
    "run_episode",
]
