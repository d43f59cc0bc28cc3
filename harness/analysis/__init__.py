"""What the stored numbers mean: summaries, ranking and the possibly-best set, A/B, draws, sensitivity."""

from harness.analysis.ab import ABReport, ab_compare, run_pair
from harness.analysis.compare import Comparison, compare_runs, find_cell, item_diff
from harness.analysis.degenerate import degenerate_cells
from harness.analysis.draws import draw_summaries
from harness.analysis.ranking import RankedCell, TaskRanking
from harness.analysis.sensitivity import Sensitivity, analyse
from harness.analysis.summaries import CellSummary, summarize

__all__ = [
    "ABReport", "CellSummary", "Comparison", "RankedCell", "Sensitivity", "TaskRanking", "ab_compare",
    "analyse", "compare_runs", "degenerate_cells", "draw_summaries", "find_cell", "item_diff", "run_pair",
    "summarize",
]
