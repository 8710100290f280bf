"""Exception types. Every error a user can hit names the problem in words a statistician reads."""


class CounterpoiseError(Exception):
    """Base class of counterpoise's errors."""


class InputError(CounterpoiseError, ValueError):
    """The data, targets or options cannot define a weighting problem (NaN, empty arm, constant column...)."""


class InfeasibleError(CounterpoiseError):
    """No weights satisfy the constraints; `binding` lists the terms that would have to be relaxed."""

    def __init__(self, message, binding=None):
        super().__init__(message)
        self.binding = binding


class SolverError(CounterpoiseError):
    """The solver failed or returned weights that fail the post-solve feasibility check."""

    def __init__(self, message, solution=None):
        super().__init__(message)
        self.solution = solution


class CalibrationError(SolverError):
    """Calibration did not reach its totals; the message names the worst targets. `solve(raise_on_failure=False)`
    returns the closest weights found instead (survey's force=TRUE)."""


class UnsupportedProblem(InputError):
    """This backend cannot solve a problem with these terms; the cvxpy backend can."""
