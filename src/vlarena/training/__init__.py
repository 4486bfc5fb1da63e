"""Training native VLAs on demonstrations: staged, async-aware, data-parallel under torchrun."""

from vlarena.training.config import RECIPES, STAGES, TrainConfig, get_recipe
from vlarena.training.trainer import TrainResult, train

__all__ = ["RECIPES", "STAGES", "TrainConfig", "TrainResult", "get_recipe", "train"]
