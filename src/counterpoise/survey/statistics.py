"""The estimators of a survey design: totals, means and ratios, over the whole sample or in domains, with their
influence values (for the linearization) and their values under any weights (for replicates).

With weights w and the domain indicator 1_D (all ones without a domain; the design is never subset, as in
survey's svyby, so the variance keeps every stratum and PSU):

    total   Y = sum 1_D w y                    z = 1_D w y
    mean    m = sum 1_D w y / sum 1_D w        z = 1_D w (y - m) / sum 1_D w
    ratio   R = sum 1_D w y / sum 1_D w x      z = 1_D w (y - R x) / sum 1_D w x

The design effect compares the variance with that of simple random sampling of the same size without
replacement (survey's deff=TRUE): for a mean, s^2 / n (1 - n / N), with n the domain's units of nonzero weight,
N their weight, s^2 = sum w (y - m)^2 / sum w * n / (n - 1) (survey's svyvar); a total's is N^2 times that, a
ratio's uses y - R x over the weighted mean of x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError

STATISTICS = ("total", "mean", "ratio")


@dataclass(frozen=True)
class Statistic:
    """One estimator over k columns: `kind` (total, mean, ratio), the columns Y (n x k), the ratio's denominators
    X (n x k, else None) and the domain indicator (n, else None)."""

    kind: str
    names: list
    Y: np.ndarray
    X: np.ndarray | None = None
    domain: np.ndarray | None = None

    def _in_domain(self, w):
        return w if self.domain is None else (w.T * self.domain).T

    def value(self, w) -> np.ndarray:
        """The estimates (k,) under weights w (n,), or (R, k) under R sets of weights (n x R)."""
        w = self._in_domain(np.asarray(w, dtype=float))
        numerator = w.T @ self.Y
        if self.kind == "total":
            return numerator
        denominator = w.T @ self.X if self.kind == "ratio" else np.sum(w, axis=0)[..., None]
        return numerator / denominator

    def influence(self, w) -> np.ndarray:
        """The influence values z (n x k) at weights w (module docstring)."""
        w = self._in_domain(np.asarray(w, dtype=float))
        if self.kind == "total":
            return w[:, None] * self.Y
        estimate = self.value(w)
        if self.kind == "mean":
            return w[:, None] * (self.Y - estimate) / w.sum()
        return w[:, None] * (self.Y - estimate * self.X) / (w @ self.X)

    def srs_variance(self, w) -> np.ndarray:
        """The variance (k,) under simple random sampling without replacement of the same size (module docstring)."""
        w = self._in_domain(np.asarray(w, dtype=float))
        n, N = np.count_nonzero(w), w.sum()
        if n < 2:
            return np.full(len(self.names), np.nan)
        estimate = self.value(w)
        if self.kind == "total":
            centred, scale = self.Y - self.Y.T @ w / N, N ** 2
        elif self.kind == "mean":
            centred, scale = self.Y - estimate, 1.0
        else:
            centred, scale = self.Y - estimate * self.X, (N / (w @ self.X)) ** 2
        s2 = (w @ centred ** 2) / N * n / (n - 1)
        return scale * s2 / n * (1 - n / N)


@dataclass(frozen=True)
class SurveyEstimate:
    """Estimates with their standard errors: one row per column (and per domain with `by=`).

    `table` has the columns estimate, se, ci_lower, ci_upper, deff; `vcov` is the covariance of the estimates (one
    domain's block per domain); `method` says how the variance was found ("linearization", or the replicate
    type). The properties read a single estimate as numbers and several as Series.
    """

    statistic: str
    table: pd.DataFrame
    vcov: pd.DataFrame
    level: float
    method: str

    def _read(self, column):
        values = self.table[column]
        return float(values.iloc[0]) if len(values) == 1 else values

    @property
    def estimate(self):
        return self._read("estimate")

    @property
    def se(self):
        return self._read("se")

    @property
    def deff(self):
        return self._read("deff")

    @property
    def ci(self):
        """(lower, upper) at `level`: normal intervals, as survey's confint on a svystat."""
        return self._read("ci_lower"), self._read("ci_upper")

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def __repr__(self):
        shown = self.table[["estimate", "se"]].rename(columns={"estimate": self.statistic, "se": "SE"})
        return f"{shown.to_string(float_format=lambda v: f'{v:.5g}')}\n({self.method})"


def estimate_table(value, covariance, srs, level, index) -> pd.DataFrame:
    """The rows of a SurveyEstimate: estimate, se, normal interval at `level`, design effect."""
    se = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        deff = np.diag(covariance) / srs
    return pd.DataFrame({"estimate": value, "se": se, "ci_lower": value - z * se, "ci_upper": value + z * se,
                         "deff": deff}, index=index)


def columns_of(frame: pd.DataFrame, columns, na_rm: bool, what: str):
    """(names, values n x k, rows with values): numeric columns as they are, a text / categorical / boolean column
    as one 0/1 indicator column per level ("var=level", survey's proportions). Missing values are an error
    unless `na_rm`, which leaves those rows out of the estimate (a domain, as survey's na.rm)."""
    names, values = [], []
    observed = np.ones(len(frame), dtype=bool)
    for column in [columns] if isinstance(columns, str) else list(columns):
        if column not in frame.columns:
            raise InputError(f"{what} {column!r} is not a column of the design's data")
        series = frame[column]
        missing = series.isna().to_numpy()
        if missing.any() and not na_rm:
            raise InputError(f"{what} {column!r} has {int(missing.sum())} missing values; pass na_rm=True to leave "
                             "those rows out (a domain of the observed rows, as survey's na.rm=TRUE)")
        observed &= ~missing
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            value = series.to_numpy(dtype=float)
            if np.isinf(value).any():
                raise InputError(f"{what} {column!r} has {int(np.isinf(value).sum())} infinite values")
            names.append(str(column))
            values.append(value)
            continue
        codes, levels = pd.factorize(series, sort=True)
        for j, level in enumerate(levels):
            names.append(f"{column}={level}")
            values.append((codes == j).astype(float))
    if not names:
        raise InputError(f"no {what} columns given")
    Y = np.column_stack(values)
    Y[~observed] = 0.0
    return names, Y, observed


def domains(frame: pd.DataFrame, by):
    """[(level, indicator)] of the domains `by` (a column, or a list of columns crossed); a categorical column's
    level with no units is an error naming it."""
    columns = [by] if isinstance(by, str) else list(by)
    for column in columns:
        if column not in frame.columns:
            raise InputError(f"by={column!r} is not a column of the design's data")
        series = frame[column]
        if series.isna().any():
            raise InputError(f"by={column!r} has {int(series.isna().sum())} missing values")
        if isinstance(series.dtype, pd.CategoricalDtype):
            unused = [level for level in series.cat.categories if not (series == level).any()]
            if unused:
                raise InputError(f"by={column!r}: the level(s) {unused} have no units in the sample, so their "
                                 "estimates are undefined; drop the unused categories (series.cat."
                                 "remove_unused_categories()) or merge them")
    keys = pd.MultiIndex.from_frame(frame[columns].astype(object)) if len(columns) > 1 else frame[columns[0]]
    codes, levels = pd.factorize(keys, sort=True)
    return [(level, codes == j) for j, level in enumerate(levels)]


class Estimators:
    """total / mean / ratio, with or without domains, for a design that gives `frame`, `weights` and
    `covariance(statistic)` (the linearization, or the replicates) and names its `method`."""

    def total(self, columns, by=None, na_rm=False, level=0.95) -> SurveyEstimate:
        """The estimated population total of each column (a text column: of each level's count), survey's
        svytotal; with `by=` one per domain, computed on the whole design (svyby)."""
        names, Y, observed = columns_of(self.frame, columns, na_rm, "column")
        return self._estimate(Statistic("total", names, Y), observed, by, level)

    def mean(self, columns, by=None, na_rm=False, level=0.95) -> SurveyEstimate:
        """The estimated population mean of each column (a text column: each level's proportion), survey's
        svymean; with `by=` one per domain, computed on the whole design (svyby)."""
        names, Y, observed = columns_of(self.frame, columns, na_rm, "column")
        return self._estimate(Statistic("mean", names, Y), observed, by, level)

    def ratio(self, numerator, denominator, by=None, na_rm=False, level=0.95) -> SurveyEstimate:
        """The ratio of the estimated totals of `numerator` and `denominator` (numeric columns, paired one to one),
        survey's svyratio; with `by=` one per domain."""
        names, Y, seen_y = columns_of(self.frame, numerator, na_rm, "numerator")
        below, X, seen_x = columns_of(self.frame, denominator, na_rm, "denominator")
        if len(below) != len(names):
            raise InputError(f"ratio needs as many denominators as numerators, got {len(names)} and {len(below)}")
        labels = [f"{a}/{b}" for a, b in zip(names, below)]
        return self._estimate(Statistic("ratio", labels, Y, X), seen_y & seen_x, by, level)

    def _estimate(self, statistic: Statistic, observed, by, level) -> SurveyEstimate:
        if not 0 < level < 1:
            raise InputError(f"level must be in (0, 1), got {level}")
        if by is None:
            parts = [(None, observed)]
        else:
            parts = [(key, inside & observed) for key, inside in domains(self.frame, by)]
        tables, blocks = [], []
        for key, inside in parts:
            piece = Statistic(statistic.kind, statistic.names, statistic.Y, statistic.X,
                              None if inside.all() else inside.astype(float))
            self._check_domain(piece, key, by)
            covariance = self.covariance(piece)
            index = pd.Index(statistic.names) if key is None else pd.MultiIndex.from_tuples(
                [(key, name) for name in statistic.names], names=[_by_name(by), "variable"])
            tables.append(estimate_table(piece.value(self.weights), covariance, piece.srs_variance(self.weights),
                                         level, index))
            blocks.append(pd.DataFrame(covariance, index=index, columns=index))
        vcov = blocks[0] if len(blocks) == 1 else _block_diagonal(blocks)
        return SurveyEstimate(statistic.kind, pd.concat(tables), vcov, level, self.method)

    def _check_domain(self, statistic, key, by):
        """The domain (or sample) has units of nonzero weight, and a mean's or ratio's denominator is not zero."""
        w = self.weights if statistic.domain is None else self.weights * statistic.domain
        where = "the sample" if key is None else f"the domain {_by_name(by)}={key!r}"
        if not np.any(w != 0):
            raise InputError(f"{where} has no units of nonzero weight; its estimate is undefined")
        denominator = {"total": np.ones(1), "mean": np.array([w.sum()])}.get(statistic.kind)
        if np.any((w @ statistic.X if denominator is None else denominator) == 0):
            raise InputError(f"the weighted denominator of the {statistic.kind} is zero in {where}")


def _by_name(by):
    return by if isinstance(by, str) else "+".join(by)


def _block_diagonal(blocks) -> pd.DataFrame:
    index = pd.MultiIndex.from_tuples([label for block in blocks for label in block.index])
    out = pd.DataFrame(0.0, index=index, columns=index)
    at = 0
    for block in blocks:
        size = len(block)
        out.iloc[at:at + size, at:at + size] = block.to_numpy()
        at += size
    return out
