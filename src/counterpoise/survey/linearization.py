"""Taylor-linearization variance of a stratified cluster sample, and the calibration residuals it is taken on.

For influence values z_i (n x k, already multiplied by the weights: z_i = w_i y_i for a total), the first-stage
PSUs sampled with replacement within strata (survey's default, the "ultimate cluster" variance of a multistage
design), and the PSU totals t_hj = sum_{i in PSU j of stratum h} z_i:

    Var = sum_h (1 - f_h) n_h / (n_h - 1) sum_j (t_hj - tbar_h)(t_hj - tbar_h)'

with n_h the PSUs sampled in stratum h, tbar_h their mean, and f_h = n_h / N_h when an fpc gives the stratum's
PSU count N_h (or the fraction f_h itself), else f_h = 0. A stratum with one PSU has no within-stratum variance;
`lonely_psu` says what to do, with survey's options (`options(survey.lonely.psu=)`):

    "fail"       (survey's default) an error naming the strata
    "remove"     the stratum contributes nothing ("certainty" alike: the PSU is taken as sampled with certainty)
    "adjust"     its PSU total is not centred (its deviation from zero; for a mean, whose influence values sum
                 to zero, that is the deviation from the grand mean), with factor 1 - f_h
    "average"    the lonely strata are left out and the variance is scaled by H / (H - L) (H strata, L lonely)

A lonely PSU that the fpc says is the whole stratum (f_h = 1) contributes nothing and is no error.

After calibration, survey takes the variance on the residuals of z against the calibration variables (its
svyrecvar on a calibrated design): with d the weights the calibration started from, g = w / d its g-weights and
a_i = g_i sqrt(d_i), z is replaced by a * r, with r the least-squares residual of z / a on sqrt(d) X. For a
calibrated total, z / a = sqrt(d) y, so r = sqrt(d) (y - X B) with B the d-weighted regression of y on X, and the
residual is w (y - X B): a calibrated total of a calibration variable has variance 0. Successive calibrations
are applied in the order they were made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

LONELY_PSU = ("fail", "remove", "adjust", "average", "certainty")


@dataclass(frozen=True)
class Calibration:
    """One calibration of a design: its calibration matrix X (n x q, dense), the weights d it started from, and the
    calibrated weights w."""

    X: np.ndarray
    d: np.ndarray
    w: np.ndarray

    def residuals(self, z: np.ndarray) -> np.ndarray:
        """a * (the residual of z / a on sqrt(d) X), a = (w / d) sqrt(d) (module docstring); rows with a = 0 (units
        the calibration zeroed) carry no influence."""
        root = np.sqrt(self.d)
        a = self.w / root
        scaled = np.divide(z, a[:, None], out=np.zeros_like(z), where=a[:, None] != 0)
        design = root[:, None] * self.X
        coefficients = np.linalg.lstsq(design, scaled, rcond=None)[0]
        return a[:, None] * (scaled - design @ coefficients)


@dataclass(frozen=True)
class Strata:
    """The first-stage structure: each row's PSU code (0..P-1, unique across strata), each PSU's stratum code, the
    strata's labels, their sampling fractions f_h (0 without an fpc) and the lonely-PSU rule."""

    psu: np.ndarray
    psu_stratum: np.ndarray
    labels: list
    fraction: np.ndarray
    lonely_psu: str = "fail"

    @property
    def psu_counts(self) -> np.ndarray:
        return np.bincount(self.psu_stratum, minlength=len(self.labels))

    def lonely(self) -> np.ndarray:
        """The strata with one PSU that the fpc does not make a census (f_h < 1)."""
        return (self.psu_counts == 1) & (self.fraction < 1)

    def check_lonely(self):
        """survey's default: a stratum with a single PSU is an error, naming the strata and the alternatives."""
        lonely = self.lonely()
        if self.lonely_psu == "fail" and lonely.any():
            names = [self.labels[h] for h in np.flatnonzero(lonely)][:5]
            raise InputError(f"{int(lonely.sum())} strata have a single PSU (e.g. {names}), so their variance "
                             "cannot be estimated; pass lonely_psu='remove', 'adjust', 'average' or 'certainty' "
                             "(survey's options(survey.lonely.psu=)), or merge those strata")

    def variance(self, z: np.ndarray) -> np.ndarray:
        """The with-replacement (with fpc: without) linearization covariance of the influence values z (n x k)."""
        z = np.asarray(z, dtype=float)
        k = z.shape[1]
        totals = np.zeros((len(self.psu_stratum), k))
        np.add.at(totals, self.psu, z)
        counts = self.psu_counts
        H = len(self.labels)
        sums = np.zeros((H, k))
        np.add.at(sums, self.psu_stratum, totals)
        means = sums / np.maximum(counts, 1)[:, None]
        lonely = self.lonely()
        factor = np.where(counts > 1, counts / np.maximum(counts - 1, 1), 0.0) * (1 - np.minimum(self.fraction, 1))
        centred = totals - means[self.psu_stratum]
        if self.lonely_psu == "adjust" and lonely.any():
            alone = lonely[self.psu_stratum]
            centred[alone] = totals[alone]
            factor = np.where(lonely, 1 - self.fraction, factor)
        V = centred.T @ (factor[self.psu_stratum][:, None] * centred)
        if self.lonely_psu == "average" and lonely.any():
            if lonely.all():
                raise InputError("every stratum has a single PSU: lonely_psu='average' has no stratum to average")
            V = V * H / (H - lonely.sum())
        return V


def calibrated_variance(z, strata: Strata, calibrations=()) -> np.ndarray:
    """The linearization covariance of z after replacing it by its calibration residuals, in calibration order."""
    for calibration in calibrations:
        z = calibration.residuals(z)
    return strata.variance(z)
