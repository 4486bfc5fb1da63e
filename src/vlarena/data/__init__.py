"""Demonstrations: scripted-expert data generation and the memory-mapped dataset format."""

from vlarena.data.datagen import DatagenConfig, DatagenReport, generate
from vlarena.data.dataset import DemoDataset, EpisodeRecord, write_dataset
from vlarena.data.paraphrases import TASK_NAMES, TASK_TEMPLATES, draw_instruction

__all__ = [
    "TASK_NAMES",
    "TASK_TEMPLATES",
    "DatagenConfig",
    "DatagenReport",
    "DemoDataset",
    "EpisodeRecord",
    "draw_instruction",
    "generate",
    "write_dataset",
]
