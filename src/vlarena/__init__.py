"""VLArena: serve, run, train and compare Vision-Language-Action robot policies."""

from vlarena.errors import (
    CheckpointError,
    ConfigError,
    InvalidObservationError,
    UnknownNameError,
    VLArenaError,
)
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState, decode_image

__version__ = "0.1.0"
__license__ = "Apache-2.0"  # VLArena's, and so that of the checkpoints it trains and ships

__all__ = [
    "ActionChunk",
    "CheckpointError",
    "ConfigError",
    "InvalidObservationError",
    "ModelInfo",
    "Observation",
    "RobotState",
    "UnknownNameError",
    "VLArenaError",
    "__version__",
    "decode_image",
]
