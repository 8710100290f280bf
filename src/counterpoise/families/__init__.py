"""The builders: each turns data and a few choices into a `WeightingProblem` (`rake` also solves it).

  balancing    sbw, kernel_sbw, entropy_balance          (causal: one arm like another, or like a target)
  calibration  calibrate, rake, trim_weights              (survey: base weights to population totals)
  sparse       sparse_calibrate, refit                    (survey: few records, totals met closely or exactly)

Each builder records its call (`arguments.recorded`), which `WeightingProblem.rebuild` re-runs on new data.
"""

from .balancing import entropy_balance, kernel_sbw, sbw
from .calibration import calibrate, rake, trim_weights
from .sparse import refit, sparse_calibrate

__all__ = ["calibrate", "entropy_balance", "kernel_sbw", "rake", "refit", "sbw", "sparse_calibrate", "trim_weights"]
