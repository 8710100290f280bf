"""Replicate-weight designs (R survey's as.svrepdesign / svrepdesign) and their variance.

Replicate r reweights the sample by a multiplier per PSU; an estimate theta is recomputed under every set of
replicate weights, and

    Var = scale * sum_r rscale_r (theta_r - c)(theta_r - c)'

with c the mean of the replicates (survey's default, survey.replicates.mse = FALSE) or the full-sample estimate
(mse=True). The constructions, with n_h the PSUs of stratum h and f_h its sampling fraction:

    jk1        (no strata) replicate j deletes PSU j and multiplies the others by n / (n - 1);
               scale (1 - f)(n - 1) / n
    jkn        replicate j deletes PSU j of stratum h and multiplies the rest of h by n_h / (n_h - 1);
               rscale_j (1 - f_h)(n_h - 1) / n_h, scale 1
    bootstrap  Rao & Wu's rescaled bootstrap (survey's "subbootstrap"): in every stratum n_h - 1 PSUs drawn with
               replacement, multiplier n_h / (n_h - 1) times the times drawn; scale 1 / (R - 1); no fpc
    brr        (two PSUs per stratum) balanced half-samples from the rows of a Sylvester Hadamard matrix of order
               R, the smallest power of two above the number of strata (survey picks the smallest multiple of
               four it has a matrix for: the same variance for linear statistics, more replicates here for some
               stratum counts): one PSU x (2 - rho), the other x rho; scale 1 / (R (1 - rho)^2), rho = 0 plain
               BRR, 0 < rho < 1 Fay's method; no fpc

Calibrating a replicate design (`ReplicateDesign.calibrate`) calibrates the full sample and then every replicate
to the same totals, each from its own replicate weights as base weights (survey's calibrate on a svyrep.design),
warm-started from the full sample's dual point by the calibration backend's Newton (survey's grake). A replicate
that does not calibrate raises a CalibrationError naming it, or with raise_on_failure=False keeps its closest
weights and is listed in `replicate_status`, with a warning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg

from ..errors import CalibrationError, InputError
from ..families.calibration import DISTANCES
from ..progress import bar
from ..validation import one_of, validated, warn
from .calibration import Calibrated
from .statistics import Estimators

KINDS = ("auto", "jk1", "jkn", "bootstrap", "brr")


class ReplicateDesign(Estimators):
    """A sample with replicate weights: `weights` (n,) the full-sample weights, `replicate_weights` (n x R), and the
    variance's `scale` and `rscales` (module docstring). Estimates as a SurveyDesign's: total, mean, ratio, by=."""

    def __init__(self, frame, weights, replicate_weights, scale, rscales, kind, mse=False):
        self.frame = frame
        self.weights = np.asarray(weights, dtype=float)
        self.replicate_weights = np.asarray(replicate_weights, dtype=float)
        self.scale = float(scale)
        self.rscales = np.asarray(rscales, dtype=float)
        self.kind = kind
        self.mse = mse
        self.replicate_status = None
        self.solution = None

    @property
    def method(self) -> str:
        return f"replicates: {self.kind}, {self.replicate_weights.shape[1]}"

    def __repr__(self):
        return (f"ReplicateDesign ({self.kind}): {len(self.frame)} units, {self.replicate_weights.shape[1]} "
                f"replicates, scale {self.scale:.4g}")

    def covariance(self, statistic) -> np.ndarray:
        """scale * sum_r rscale_r (theta_r - c)(theta_r - c)' over the replicates' estimates theta_r."""
        thetas = statistic.value(self.replicate_weights)
        used = self.rscales > 0
        centre = statistic.value(self.weights) if self.mse else thetas[used].mean(axis=0)
        deviations = thetas - centre
        return self.scale * deviations.T @ (self.rscales[:, None] * deviations)

    @validated(distance=one_of(DISTANCES))
    def calibrate(self, margins=None, totals=None, distance="linear", bounds=None, epsilon=1e-9, max_iter=100,
                  raise_on_failure=True, progress=None) -> "ReplicateDesign":
        """The full sample and every replicate calibrated to the same totals (module docstring); arguments as
        `SurveyDesign.calibrate`."""
        full = Calibrated(self.frame, self.weights, margins, totals, distance, bounds, epsilon, max_iter)
        solution = full.solution
        calibrated = np.empty_like(self.replicate_weights)
        status = []
        for r in bar(range(self.replicate_weights.shape[1]), "replicates", progress):
            calibrated[:, r], run = full.recalibrate(self.replicate_weights[:, r], epsilon, max_iter)
            status.append((r, run.converged, run.iterations, run.largest))
        table = pd.DataFrame(status, columns=["replicate", "converged", "iterations", "max_relative_misfit"])
        failed = table[~table.converged]
        if len(failed):
            worst = ", ".join(f"{int(r)} ({m:.1e})" for r, m in zip(failed.replicate, failed.max_relative_misfit))
            message = (f"{len(failed)} of {len(table)} replicates did not calibrate (replicate, max |misfit| / "
                       f"(1 + |T|)): {worst}")
            if raise_on_failure:
                raise CalibrationError(message + "; pass raise_on_failure=False to keep their closest weights")
            warn(message + "; their closest weights are kept (see replicate_status)")
        out = ReplicateDesign(self.frame, solution.weights.to_numpy(), calibrated, self.scale, self.rscales,
                              self.kind, self.mse)
        out.replicate_status, out.solution = table, solution
        return out


@validated(kind=one_of(KINDS))
def replicate_design(design, kind="auto", replicates=50, seed=0, fay_rho=0.0, mse=False) -> ReplicateDesign:
    """The replicate design of a SurveyDesign (module docstring). A calibrated design's replicates are made from
    its weights as they are (survey: calibrate after as.svrepdesign to recalibrate every replicate)."""
    if design.calibrations:
        warn("these replicates reweight the calibrated weights without recalibrating them; build the replicates "
             "from the uncalibrated design and call .calibrate() on them to recalibrate every replicate")
    strata = design.strata
    stratified = len(strata.labels) > 1
    kind = ("jkn" if stratified else "jk1") if kind == "auto" else kind
    if kind == "jk1":
        multipliers, scale, rscales = _jk1(strata, stratified)
    elif kind == "jkn":
        multipliers, scale, rscales = _jkn(strata)
    elif kind == "bootstrap":
        multipliers, scale, rscales = _rao_wu(strata, replicates, seed)
    else:
        multipliers, scale, rscales = _brr(strata, fay_rho)
    replicate_weights = design.weights[:, None] * multipliers[strata.psu]
    return ReplicateDesign(design.frame, design.weights, replicate_weights, scale, rscales, kind, mse)


def _jk1(strata, stratified):
    if stratified:
        raise InputError("jk1 deletes PSUs of an unstratified design; this design has strata: use kind='jkn'")
    n = len(strata.psu_stratum)
    f = float(strata.fraction[0])
    multipliers = np.full((n, n), n / (n - 1))
    np.fill_diagonal(multipliers, 0.0)
    return multipliers, (1 - f) * (n - 1) / n, np.ones(n)


def _usable_strata(strata, what):
    """The PSU count per stratum, refusing lonely PSUs unless the design's lonely_psu removes them."""
    counts = strata.psu_counts
    lonely = strata.lonely()
    if lonely.any() and strata.lonely_psu not in ("remove", "certainty"):
        names = [strata.labels[h] for h in np.flatnonzero(lonely)][:5]
        raise InputError(f"{what}: {int(lonely.sum())} strata have a single PSU (e.g. {names}); build the design "
                         "with lonely_psu='remove' or 'certainty' to leave them out of the replicates, or merge them")
    return counts


def _jkn(strata):
    counts = _usable_strata(strata, "jkn")
    columns, rscales = [], []
    for h in np.flatnonzero((counts > 1) & (strata.fraction < 1)):
        members = np.flatnonzero(strata.psu_stratum == h)
        n_h = len(members)
        for j in members:
            column = np.ones(len(strata.psu_stratum))
            column[members] = n_h / (n_h - 1)
            column[j] = 0.0
            columns.append(column)
            rscales.append((1 - strata.fraction[h]) * (n_h - 1) / n_h)
    if not columns:
        raise InputError("jkn: no stratum has two or more PSUs to delete")
    return np.column_stack(columns), 1.0, np.asarray(rscales)


def _rao_wu(strata, replicates, seed):
    if int(replicates) != replicates or replicates < 2:
        raise InputError(f"replicates must be an integer >= 2, got {replicates}")
    if strata.fraction.any():
        warn("the Rao-Wu bootstrap does not use the fpc (as survey's subbootstrap); the replicate variance is the "
             "with-replacement one")
    counts = _usable_strata(strata, "bootstrap")
    rng = np.random.default_rng(seed)
    multipliers = np.ones((len(strata.psu_stratum), int(replicates)))
    for h in np.flatnonzero(counts > 1):
        members = np.flatnonzero(strata.psu_stratum == h)
        n_h = len(members)
        for r in range(int(replicates)):
            drawn = np.bincount(rng.integers(0, n_h, size=n_h - 1), minlength=n_h)
            multipliers[members, r] = drawn * n_h / (n_h - 1)
    return multipliers, 1 / (replicates - 1), np.ones(int(replicates))


def _brr(strata, rho):
    if not 0 <= rho < 1:
        raise InputError(f"fay_rho must be in [0, 1), got {rho}")
    counts = strata.psu_counts
    if np.any(counts != 2):
        bad = [strata.labels[h] for h in np.flatnonzero(counts != 2)][:5]
        raise InputError(f"brr needs exactly two PSUs in every stratum; strata {bad} have "
                         f"{sorted(set(counts[counts != 2].tolist()))} PSUs (use kind='jkn' or 'bootstrap')")
    if strata.fraction.any():
        warn("brr does not use the fpc (as survey, which drops it with a warning)")
    H = len(strata.labels)
    order = 1 << int(np.ceil(np.log2(H + 1)))
    hadamard = scipy.linalg.hadamard(order)[1:H + 1]            # skip the row of ones
    multipliers = np.empty((len(strata.psu_stratum), order))
    for h in range(H):
        first, second = np.flatnonzero(strata.psu_stratum == h)
        plus = hadamard[h] > 0
        multipliers[first] = np.where(plus, 2 - rho, rho)
        multipliers[second] = np.where(plus, rho, 2 - rho)
    return multipliers, 1 / (order * (1 - rho) ** 2), np.ones(order)

