"""Evaluating policies in simulation: success rates with Wilson intervals on fixed seeds."""

from vlarena.evaluation.harness import (
    EXPERT,
    EpisodeJob,
    EpisodeResult,
    EvalConfig,
    eval_instruction,
    eval_seeds,
    evaluate,
    evaluate_episode,
    make_controller,
)
from vlarena.evaluation.report import TaskSummary, markdown_table, summarize, write_report
from vlarena.stats import wilson_interval

__all__ = [
    "EXPERT",
    "EpisodeJob",
    "EpisodeResult",
    "EvalConfig",
    "TaskSummary",
    "eval_instruction",
    "eval_seeds",
    "evaluate",
    "evaluate_episode",
    "make_controller",
    "markdown_table",
    "summarize",
    "wilson_interval",
    "write_report",
]
