"""counterpoise: weights that make one set of units look like another, as declarative convex problems.

    import counterpoise as cpz
    prob = cpz.sbw(data, treatment="A", covariates=["X1", "X2"], estimand="ATT", delta=0.02)
    sol = prob.solve()
"""

from . import basis, datasets, diagnostics, estimate, plots, terms, tuning
from .errors import CalibrationError, CounterpoiseError, InfeasibleError, InputError, SolverError
from .families import calibrate, entropy_balance, kernel_sbw, rake, refit, sbw, sparse_calibrate, trim_weights
from .problem import WeightingProblem
from .propensity import BalnetCV, BalnetFit, balnet, boot_balnet, cv_balnet
from .solution import Check, Path, Solution
from .survey import ReplicateDesign, SurveyDesign, SurveyEstimate
from .validation import CounterpoiseWarning

__version__ = "0.1.0"

__all__ = [
    "BalnetCV", "BalnetFit", "CalibrationError", "Check", "CounterpoiseError", "CounterpoiseWarning", "InfeasibleError",
    "InputError", "Path", "ReplicateDesign", "Solution", "SolverError", "SurveyDesign", "SurveyEstimate",
    "WeightingProblem", "balnet", "basis", "boot_balnet", "calibrate",
    "cv_balnet",
    "datasets", "diagnostics", "entropy_balance", "estimate", "kernel_sbw", "plots", "rake", "refit", "sbw",
    "sparse_calibrate", "terms", "trim_weights", "tuning",
]
