"""A design's calibration (survey's calibrate on a svydesign), kept so that other base weights (a replicate design's
replicates) are calibrated to the same totals by the same Newton (survey's grake), from the full sample's dual
point."""

from __future__ import annotations

import numpy as np

from ..backends.calibration import grake, sparse_if_mostly_zero
from ..backends.dual import distance_block
from ..backends.forms import CalibrationForm
from ..families.calibration import calibration_inputs, calibration_problem


class Calibrated:
    """The calibration of base weights d to the targets: `problem`, its `solution` by the calibration backend, the
    calibration matrix `X` (dense), and `recalibrate(d)` for other base weights."""

    def __init__(self, frame, d, margins, totals, distance, bounds, epsilon, max_iter):
        frame, d, X, names, T, N = calibration_inputs(frame, d, margins, totals, None, sparse=False)
        self.problem = calibration_problem(frame.index, X, names, T, N, d, distance, bounds)
        self.solution = self.problem.solve(backend="calibration", epsilon=epsilon, max_iter=max_iter)
        self.X = np.asarray(X, dtype=float)
        form = CalibrationForm.of(self.problem.terms, self.problem.n, "calibration")
        group = form.groups[0]
        self._rows = sparse_if_mostly_zero(group.constraint_rows(self.problem.n))
        self._distance = distance_block(form.distance, group)
        lo, hi = form.box()
        self._g_box = (lo / form.distance.base, hi / form.distance.base)      # bounds on g = w / d, per unit
        self._target, self._total, self._scales = group.targets()[0], group.total, CalibrationForm.scales(group)

    def recalibrate(self, d, epsilon=1e-9, max_iter=100):
        """The same totals from base weights d (zeros allowed: those units keep weight 0), by grake from the full
        sample's dual point: the weights and the `backends.calibration.CalibrationRun`."""
        return grake(self._rows, self._distance, d, self._g_box, self._target, self._total, self._scales,
                     self.solution.dual_point, epsilon, max_iter)
