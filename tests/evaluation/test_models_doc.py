"""docs/models.md is generated from eval results: tables, verdicts against the targets, plots."""

from pathlib import Path

import pytest

from vlarena.data import TASK_NAMES
from vlarena.evaluation import EpisodeResult, write_report
from vlarena.evaluation.models_doc import verdicts, write
from vlarena.evaluation.report import TaskSummary


def _results(task_success: float, wrong_target: bool = False) -> list[EpisodeResult]:
    out = []
    for task in TASK_NAMES:
        for i in range(10):
            won = i < round(10 * task_success)
            first = "blue" if wrong_target and i == 0 else "red"
            out.append(EpisodeResult(task, i, "x", won, first, "red", 5))
    return out


def test_an_exact_ten_point_gap_is_within_and_missing_results_are_said() -> None:
    def rows(successes: int) -> dict[str, TaskSummary]:
        return {
            t: TaskSummary(t, 50, successes, successes / 50, 0, 1, 1.0, 50, 5) for t in TASK_NAMES
        }

    lines = verdicts(
        {("vla-flow-small", "trained"): rows(40), ("vla-flow-small", "held-out"): rows(35)}
    )
    assert "held-out wordings within 10 points on every task" in lines[0]
    assert "misses: touch 80% < 95%" in lines[0]
    assert lines[1] == "- **vla-ar-small**: not evaluated."
    partial = verdicts({("vla-ar-small", "trained"): {"touch": rows(50)["touch"]}})
    assert "push_left not evaluated" in partial[1]
    assert "held-out wordings not evaluated on every task" in partial[1]


def test_the_page_reports_targets_met_missed_and_the_wording_gap(tmp_path: Path) -> None:
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    for model, wordings, rate in [
        ("vla-flow-small", "trained", 1.0),
        ("vla-flow-small", "held-out", 0.8),
        ("vla-ar-small", "trained", 0.5),
        ("vla-ar-small", "held-out", 0.5),
    ]:
        write_report(
            runs / "eval" / f"{model}-{wordings}",
            model,
            _results(rate, wrong_target=model == "vla-ar-small"),
            {},
        )
    (runs / "times.txt").write_text("datagen 360 s\nflow 1800 s\nar 900 s\n")
    text = write(runs, docs)
    assert (docs / "models.md").read_text() == text
    assert (docs / "img" / "shipped-success.png").read_bytes()[:4] == b"\x89PNG"
    assert "| **total** | **51.0 min** |" in text
    assert (
        "- **vla-flow-small** meets every target (correct target 70/70 = 100%); held-out"
        " wordings more than 10 points lower on: touch (20 points)" in text
    )
    ar = next(line for line in text.splitlines() if line.startswith("- **vla-ar-small**"))
    assert "misses: touch 50% < 85%" in ar
    assert "correct target 63/70 = 90%" in ar  # 1 of 10 per task wrong: exactly the floor
    assert "held-out wordings within 10 points on every task" in ar
    assert "| touch | 10/10 = 100% (72%-100%); target 100%" in text
    (runs / "times.txt").unlink()  # not a make ship run: no page without its training times
    with pytest.raises(FileNotFoundError, match=r"times\.txt is missing"):
        write(runs, docs)
