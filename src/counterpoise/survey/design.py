"""A survey design: the sample's weights, strata, first-stage clusters (PSUs) and finite population corrections, as
R survey's svydesign reads them, with design-based estimates and calibration.

    design = cpz.SurveyDesign(apiclus1, weights="pw", ids="dnum", fpc="fpc")
    design.mean("api00")                        # 644.17, SE 23.542 (survey: svymean(~api00, dclus1))
    cal = design.calibrate(margins={"stype": {"E": 4421, "H": 755, "M": 1018}}, totals={"api99": 3_914_069})
    cal.total("enroll"); cal.mean("api00", by="stype")
    rep = design.replicates("jk1"); rep.calibrate(...).mean("api00")

Variances are Taylor linearizations (`survey.linearization`): the first-stage PSUs are taken as sampled with
replacement within strata unless an fpc is given, the ultimate-cluster variance of a multistage design (survey's
too when no later stage has an fpc). A calibrated design's variance is taken on the calibration residuals, so a
calibrated total of a calibration variable has SE 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from ..families.calibration import DISTANCES
from ..validation import as_frame, finite, one_of, validated, warn
from .calibration import Calibrated
from .linearization import LONELY_PSU, Calibration, Strata, calibrated_variance
from .replicates import replicate_design
from .statistics import Estimators


@validated(lonely_psu=one_of(LONELY_PSU))
def strata_of(frame: pd.DataFrame, ids=None, strata=None, fpc=None, nest=False, lonely_psu="fail") -> Strata:
    """The first-stage structure of a sample, checked as survey's svydesign checks it: ids (the PSU column; None:
    every row its own PSU) and strata without missing values, PSUs nested in strata (or `nest=True`, which makes PSU
    ids repeated across strata distinct), and an fpc constant within strata that is either every stratum's PSU
    count N_h (all values >= 1) or its sampling fraction (all values <= 1), never below the PSUs sampled."""
    unstratified = (np.zeros(len(frame), int), [None])
    stratum_code, labels = _codes(frame, strata, "strata") if strata is not None else unstratified
    if ids is None:
        psu_key = pd.Series(np.arange(len(frame)))
    else:
        _codes(frame, ids, "ids")
        psu_key = frame[ids].reset_index(drop=True)
    keys = pd.MultiIndex.from_arrays([stratum_code, psu_key]) if nest else psu_key
    psu, _ = pd.factorize(keys, sort=True)
    psu_stratum = np.full(psu.max() + 1, -1)
    psu_stratum[psu] = stratum_code
    spread = pd.Series(stratum_code).groupby(psu).nunique()
    if (spread > 1).any():
        raise InputError(f"clusters are not nested in strata: {int((spread > 1).sum())} PSU ids of {ids!r} appear in "
                         "more than one stratum; pass nest=True if ids are numbered within strata")
    if psu_stratum.size == 1 and ids is not None:
        raise InputError(f"the design has only one primary sampling unit ({ids!r} takes one value)")
    counts = np.bincount(psu_stratum, minlength=len(labels))
    fraction = np.zeros(len(labels)) if fpc is None else _fractions(frame, fpc, stratum_code, counts, labels)
    return Strata(psu=psu, psu_stratum=psu_stratum, labels=labels, fraction=fraction, lonely_psu=lonely_psu)


def _codes(frame, column, what):
    if column not in frame.columns:
        raise InputError(f"{what}={column!r} is not a column of the data")
    values = frame[column]
    if values.isna().any():
        raise InputError(f"{what} column {column!r} has {int(values.isna().sum())} missing values; every unit needs "
                         f"its {'PSU' if what == 'ids' else 'stratum'}")
    codes, labels = pd.factorize(values, sort=True)
    return codes, list(labels)


def _fractions(frame, fpc, stratum_code, counts, labels) -> np.ndarray:
    """Each stratum's sampling fraction f_h = n_h / N_h from the fpc column (survey's as.fpc rules)."""
    if fpc not in frame.columns:
        raise InputError(f"fpc={fpc!r} is not a column of the data")
    values = finite(frame[fpc].to_numpy(dtype=float), f"fpc column {fpc!r}")
    per_stratum = pd.Series(values).groupby(stratum_code)
    if (per_stratum.nunique() > 1).any():
        raise InputError(f"fpc column {fpc!r} varies within a stratum; it must be the stratum's population PSU count "
                         "(or sampling fraction), the same on every row of the stratum")
    value = per_stratum.first().reindex(range(len(labels))).to_numpy()
    if np.any(value < 0):
        raise InputError(f"fpc column {fpc!r} has negative values")
    if np.any(value > 1):
        if np.any(value < 1):
            raise InputError(f"fpc column {fpc!r} mixes population sizes (> 1) and sampling fractions (< 1); give "
                             "all of one kind")
        small = np.flatnonzero(value < counts)
        if small.size:
            h = small[0]
            raise InputError(f"fpc is smaller than the sample: stratum {labels[h]!r} has {counts[h]} PSUs sampled but "
                             f"fpc {fpc!r} = {value[h]:g} PSUs in the population")
        return counts / value
    if np.all(value == 1):
        raise InputError(f"fpc column {fpc!r} is 1 everywhere: a census in every stratum (no sampling variance); "
                         "give population PSU counts or fractions below 1")
    return value


class SurveyDesign(Estimators):
    """A sample with its design (module docstring): weights, PSUs (`ids`), `strata`, `fpc` (a column: the
    population number of PSUs per stratum, or the sampling fraction), `nest`, and the rule for strata with one
    PSU (`lonely_psu`: "fail", survey's default, "remove", "adjust", "average" or "certainty"; see
    `survey.linearization`). Without weights they are N_h / n_h from the fpc, or 1 with a warning (survey's
    "assuming equal probability").
    """

    method = "linearization"

    def __init__(self, data, weights=None, ids=None, strata=None, fpc=None, nest=False, lonely_psu="fail"):
        frame = as_frame(data)
        if not frame.index.is_unique:
            raise InputError("data has duplicated index labels; the weights are matched to rows by index")
        self.frame = frame
        self.strata = strata_of(frame, ids, strata, fpc, nest, lonely_psu)
        self.weights = self._design_weights(weights, fpc)
        self.calibrations = ()
        self.solution = None

    def _design_weights(self, weights, fpc) -> np.ndarray:
        if weights is not None:
            if weights not in self.frame.columns:
                raise InputError(f"weights={weights!r} is not a column of the data")
            w = finite(self.frame[weights].to_numpy(dtype=float), f"weights column {weights!r}")
            if np.any(w <= 0):
                raise InputError(f"weights column {weights!r} has {int(np.sum(w <= 0))} values <= 0; design "
                                 "weights are positive (leave out-of-sample rows out, or use by= for domains)")
            return w
        if fpc is not None:
            return 1 / self.strata.fraction[self.strata.psu_stratum[self.strata.psu]]
        warn("no weights or fpc given: assuming equal probability (every weight 1)")
        return np.ones(len(self.frame))

    def __repr__(self):
        s = self.strata
        kind = "calibrated " if self.calibrations else ""
        return (f"{kind}SurveyDesign: {len(self.frame)} units in {len(s.psu_stratum)} PSUs, {len(s.labels)} "
                f"strata, {'with' if s.fraction.any() else 'without'} fpc; sum of weights {self.weights.sum():.6g}")

    def covariance(self, statistic) -> np.ndarray:
        """The linearization covariance of `statistic` (a `statistics.Statistic`) under this design."""
        self.strata.check_lonely()
        return calibrated_variance(statistic.influence(self.weights), self.strata, self.calibrations)

    def with_weights(self, weights, calibration=None, solution=None) -> "SurveyDesign":
        """This design with other weights (and one more calibration stage, from a calibration)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.weights = np.asarray(weights, dtype=float)
        out.calibrations = self.calibrations + ((calibration,) if calibration is not None else ())
        out.solution = solution
        return out

    @validated(distance=one_of(DISTANCES))
    def calibrate(self, margins=None, totals=None, distance="linear", bounds=None, epsilon=1e-9,
                  max_iter=100) -> "SurveyDesign":
        """The design calibrated to population totals (survey's calibrate): the weights move as little as the
        `distance` allows ("linear" GREG, "raking", "logit" with `bounds`; `bounds=(L, U)` on g = w / d) to meet
        `margins={"var": {"level": N_level}}` and `totals={"col": T}` exactly, solved by `cpz.calibrate`'s
        problem on the calibration backend. The calibrated design's `solution` is that solve (its balance,
        validate()); its variances use the calibration residuals."""
        calibrated = Calibrated(self.frame, self.weights, margins, totals, distance, bounds, epsilon, max_iter)
        w = calibrated.solution.weights.to_numpy()
        return self.with_weights(w, Calibration(X=calibrated.X, d=self.weights, w=w), calibrated.solution)

    def replicates(self, kind="auto", replicates=50, seed=0, fay_rho=0.0, mse=False):
        """A replicate-weight design from this one (survey's as.svrepdesign): "jk1" (delete one PSU,
        unstratified), "jkn" (delete one PSU within its stratum), "bootstrap" (Rao-Wu rescaled, `replicates`
        draws with `seed`), "brr" (balanced half-samples of two-PSU strata; `fay_rho` for Fay's method) or
        "auto" (jk1 without strata, else jkn). `mse=True` centres the variance at the full-sample estimate
        instead of the replicates' mean (survey's survey.replicates.mse)."""
        return replicate_design(self, kind, replicates, seed, fay_rho, mse)
