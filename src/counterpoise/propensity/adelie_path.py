"""The calibration loss as an adelie custom GLM, and one arm's penalized path through adelie's group elastic net.

adelie (`pip install counterpoise[balnet]`) is imported on first use: it is optional, pins numpy < 2, and takes
about two seconds to import (IPython, scikit-learn). On import it attaches a handler to the root logger and later
logs every truncated path there; `load_adelie()` detaches that handler and points adelie at a logger of its own
("adelie", silent unless you give it a handler), so counterpoise's output stays clean and the reason for a
truncation is kept on the fit instead.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.special

from ..validation import warn
from . import loss as cal

#: balnet's fast-fail guard (Tan 2020, condition S2): below this link the loss is running off to -infinity.
ETA_FLOOR = -50.0
#: Floor on the diagonal Hessian handed to adelie. Off the arm the Hessian is 0, adelie clamps it to 1e-24 and then
#: loses its internal eta to cancellation; 1e-12 keeps eta exact to ~1e-6 and moves the coefficients by ~1e-12.
HESSIAN_FLOOR = 1e-12
#: adelie's message when coordinate descent runs out of iterations at a lambda: the path stops there (balnet's rule).
_MAX_CD = "max coordinate descents reached"


class Diverged(Exception):
    """Raised inside the GLM callbacks when the loss diverges; adelie catches it and ends the path there."""


@functools.cache
def load_adelie():
    """adelie, imported once, with its root-logger handler detached (or an ImportError naming the extra)."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        import adelie
    except ImportError as exc:
        raise ImportError(
            "counterpoise.balnet needs adelie, the group elastic-net solver it runs on: "
            "pip install 'counterpoise[balnet]' (adelie 1.1.52 has wheels for CPython 3.9-3.12 and needs numpy < 2)"
        ) from exc
    for handler in root.handlers[len(before):]:
        root.removeHandler(handler)
    quiet = logging.getLogger("adelie")
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    adelie.logger.logger = quiet
    return adelie


@functools.cache
def glm_class():
    """The calibration loss as an adelie GLM class (built once adelie is imported)."""
    ad = load_adelie()

    class CalibrationLoss(ad.glm.GlmBase64):
        """Tan's calibration loss (see `loss`) in adelie's GLM interface: gradient() writes the negative gradient,
        hessian() the diagonal Hessian, both in place. loss_full() returns loss_null - 1, so adelie's
        coordinate-descent tolerance tol * (loss_null - loss_full) / hess_sum stays positive (the null loss itself
        is negative for arms holding less than 27% of the weight)."""

        def __init__(self, y, weights, scale):
            self.y = np.ascontiguousarray(y, dtype=np.float64)
            self.weights = np.ascontiguousarray(weights / np.sum(weights), dtype=np.float64)
            ad.glm.GlmBase64.__init__(self, "balnet", self.y, self.weights)   # pybind11 trampoline: no super()
            self.scale = float(scale)
            self._on_arm = self.scale * self.weights * self.y
            self._off_arm = self.scale * self.weights * (1.0 - self.y)
            self._null = cal.null_loss(self.y, self.weights, self.scale)

        def gradient(self, eta, grad):
            lowest = float(np.min(eta))
            if not lowest >= ETA_FLOOR:
                raise Diverged(f"the link reached {lowest:.3g} (< {ETA_FLOOR:g}): the calibration loss is diverging "
                               "(poor overlap or separation)")
            grad[...] = self._on_arm * cal.arm_exp(eta, self.y) - self._off_arm

        def hessian(self, eta, grad, hess):
            hess[...] = np.maximum(grad + self._off_arm, HESSIAN_FLOOR)
            if not np.isfinite(np.sum(hess)):
                raise Diverged("the Hessian is not finite: the calibration loss is diverging")

        def loss(self, eta):
            return cal.loss(eta, self.y, self.weights, self.scale)

        def loss_full(self):
            return self._null - 1.0

        def inv_link(self, eta, out):
            out[...] = scipy.special.expit(eta)

    return CalibrationLoss


@dataclass
class RawPath:
    """One arm's converged path on the standardized scale: lambdas (decreasing), intercepts (L,), betas (L, p)
    sparse; `requested` lambdas asked for; `stopped` why the path ended early ('' when it ran to the end)."""

    lambdas: np.ndarray
    intercepts: np.ndarray
    betas: scipy.sparse.csr_matrix
    requested: int
    stopped: str
    seconds: float


def solve_path(Xs, y, weights, scale, groups, penalty, alpha, lambdas=None, n_lambda=100, lambda_min_ratio=1e-2,
               tol=1e-9, max_iter=100_000, n_threads=1) -> RawPath:
    """adelie's pathwise group elastic net on the calibration loss, with balnet's settings (unpenalized intercept,
    no early exit). `Xs` is the standardized design (Fortran order), `groups` 0-based group starts, `penalty` one
    factor per group. A path that diverges or runs out of coordinate descents stops at the last converged lambda;
    the reason is kept in `stopped`."""
    ad = load_adelie()
    glm = glm_class()(y, weights, scale)
    options = dict(groups=np.asarray(groups, dtype=int), alpha=float(alpha), penalty=np.asarray(penalty, dtype=float),
                   irls_max_iters=10_000, irls_tol=tol, max_iters=max_iter, tol=tol, adev_tol=0.9, ddev_tol=0.0,
                   newton_tol=1e-12, newton_max_iters=1000, early_exit=False, intercept=True, progress_bar=False,
                   n_threads=n_threads)
    if lambdas is None:
        options.update(lmda_path_size=int(n_lambda), min_ratio=float(lambda_min_ratio))
        requested = int(n_lambda)
    else:
        options["lmda_path"] = np.sort(np.asarray(lambdas, dtype=float))[::-1].copy()
        requested = len(lambdas)
    state = ad.grpnet(np.asfortranarray(Xs), glm, **options)
    stopped = _reason(state.error) if len(state.lmdas) < requested else ""
    return RawPath(np.asarray(state.lmdas, dtype=float), np.asarray(state.intercepts, dtype=float),
                   scipy.sparse.csr_matrix(state.betas), requested, stopped, float(state.total_time))


def _reason(error: str) -> str:
    """adelie's error text (exception name, message, traceback) as one line saying why the path stopped."""
    first = error.strip().splitlines()[0] if error.strip() else "the solver stopped without a message"
    if first.startswith(f"{Diverged.__name__}: "):
        return first[len(Diverged.__name__) + 2:]
    if _MAX_CD in first:
        return "coordinate descent did not converge (the calibration loss is diverging: poor overlap or separation)"
    warn(f"adelie stopped the path with an unexpected error: {first}")
    return f"adelie: {first}"
