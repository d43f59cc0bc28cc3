"""One run: the experiment spec, planning, provenance, execution through the cache, rescoring, calibration."""

from harness.runner.calibration import calibrate_run
from harness.runner.execute import RunSummary, run_experiment
from harness.runner.planning import Cell, plan
from harness.runner.provenance import config_snapshot
from harness.runner.rescore import rescore_run
from harness.runner.spec import ExperimentSpec

__all__ = [
    "Cell", "ExperimentSpec", "RunSummary", "calibrate_run", "config_snapshot", "plan", "rescore_run",
    "run_experiment",
]
