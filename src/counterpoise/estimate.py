"""Weighted (Hajek) means and treatment-effect estimates with standard errors.

Both contrasts are differences of two Hajek means, mu_arm = sum_arm v_i Y_i with weights v_i normalized to sum to 1
within the arm. Three standard errors:

    se="balancing"  (the default for a balancing solution) the outcome residualized on the functions the weights
                    balance, so the SE knows they are balanced (`balancing_se`; R sbw's estimate() does the same)
    se="fixed"      the weights held fixed, Var = sum_treated v_i^2 (Y_i - mu_t)^2 + sum_control v_i^2 (Y_i - mu_c)^2,
                    the sandwich of a Hajek estimator with known weights (the default for a plain weights Series)
    se="bootstrap"  the weights re-estimated on every stratified resample, percentile interval

`augmented=True` takes the bias-corrected contrast instead: each weighted arm's mean corrected by the outcome
regression on the balance functions for the imbalance the weights leave (`balancing_se`), the estimator whose
variance the balancing SE is; equal to the plain contrast at exact balance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats

from .backends.blocks import DaskBlocks
from .balancing_se import (BalanceFunctions, balancing, centred, design, effect_sum, regression_factor, regressions,
                           residual_sum, triangular_factor)
from .diagnostics import effective_sample_size
from .errors import CounterpoiseError, InputError, SolverError
from .progress import bar
from .validation import (columns_list, finite, interval, is_dask_frame, numeric_matrix, one_of, optional,
                         treatment_indicator, validated, whole_number)

_MAX_FAILED_SHARE = 0.1


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error and confidence interval.

    `method` is "balancing" (the outcome residualized on the balance functions, normal interval), "fixed"
    (weights held fixed, normal interval) or "bootstrap" (weights re-estimated on each replicate, percentile
    interval); `n_failed_replicates` counts bootstrap replicates whose solve failed and were dropped; `augmented`:
    the bias-corrected contrast (`balancing_se`), not the plain weighted one.
    """

    estimand: str
    estimate: float
    std_error: float
    ci_lower: float
    ci_upper: float
    level: float
    method: str
    n_treated: int
    n_control: int
    ess_treated: float
    ess_control: float
    n_failed_replicates: int = 0
    augmented: bool = False

    def __str__(self) -> str:
        if self.method == "balancing":
            how = "outcome residualized on the balance functions"
        elif self.method == "fixed":
            how = "linearization, weights held fixed"
        else:
            how = "bootstrap percentile, weights re-estimated"
            if self.n_failed_replicates:
                how += f", {self.n_failed_replicates} failed replicates dropped"
        if self.augmented:
            how = "augmented by the outcome regression; " + how
        return (f"{self.estimand} = {self.estimate:.4g} (SE {self.std_error:.3g}, {100 * self.level:g}% CI "
                f"{self.ci_lower:.3g} to {self.ci_upper:.3g}; {how})")

    __repr__ = __str__

    def to_frame(self) -> pd.DataFrame:
        """The estimate as a one-row DataFrame, one column per field."""
        return pd.DataFrame([asdict(self)])


def weighted_mean(y, w) -> float:
    """Hajek mean sum w y / sum w."""
    y = np.asarray(y, dtype=float)
    w = finite(np.asarray(w, dtype=float), "w")
    if y.ndim != 1 or y.shape != w.shape:
        raise InputError(f"y and w must be 1-D of the same length, got shapes {y.shape} and {w.shape}")
    if not np.all(np.isfinite(y)):
        raise InputError("y has non-finite values (NaN or inf)")
    if w.sum() <= 0:
        raise InputError("w sums to zero; the weighted mean is undefined")
    return float(w @ y / w.sum())


def _column(data: pd.DataFrame, name, argument: str) -> pd.Series:
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if name not in data.columns:
        raise InputError(f"{argument}={name!r} is not a column of data")
    return data[name]


def _treatment(data: pd.DataFrame, treatment) -> np.ndarray:
    """The treatment column as a boolean array; it must be 0/1 with both arms non-empty."""
    return treatment_indicator(data, treatment) == 1


def _outcome(data: pd.DataFrame, outcome) -> np.ndarray:
    values = _column(data, outcome, "outcome")
    try:
        y = values.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"outcome column {outcome!r} must be numeric") from None
    if not np.all(np.isfinite(y)):
        raise InputError(f"outcome column {outcome!r} has {int(np.sum(~np.isfinite(y)))} non-finite values")
    return y


def _weight_series(weights) -> pd.Series:
    """A weights Series from a Series or a Solution-like object with a `.weights` Series."""
    series = getattr(weights, "weights", weights)
    if not isinstance(series, pd.Series):
        raise InputError("weights must be a pandas Series indexed like data, or a Solution with a .weights Series; "
                         f"got {type(weights).__name__}")
    if not series.index.is_unique:
        raise InputError("weights has duplicated index labels")
    return series


def _aligned(series: pd.Series, index: pd.Index, rows: str, name: str = "weights") -> np.ndarray:
    """Weights for the data rows `index` (labels), checked: none missing, finite, >= 0, not all zero."""
    missing = ~index.isin(series.index)
    if missing.any():
        raise InputError(f"{name} are missing for {int(missing.sum())} of the {index.size} {rows} rows "
                         f"(e.g. index labels {index[missing][:3].tolist()})")
    w = finite(series.reindex(index).to_numpy(dtype=float), f"{name} of the {rows} rows")
    if w.sum() <= 0:
        raise InputError(f"{name} of the {rows} rows are all zero")
    return w


def _sample_weights(data: pd.DataFrame, sample_weights) -> np.ndarray:
    """Sample weights as an array over the rows of data: a column name, a Series aligned on data.index, or an array."""
    if sample_weights is None:
        return np.ones(len(data))
    if isinstance(sample_weights, str):
        values = _column(data, sample_weights, "sample_weights").to_numpy(dtype=float)
    elif isinstance(sample_weights, pd.Series):
        values = _aligned(sample_weights, data.index, "data", "sample_weights")
    else:
        values = np.asarray(sample_weights, dtype=float)
        if values.shape != (len(data),):
            raise InputError(f"sample_weights must have shape ({len(data)},), got {values.shape}")
    return finite(values, "sample_weights")


def _contrast(y_t, v_t, y_c, v_c) -> tuple[float, float]:
    """Hajek difference sum v_t y_t / sum v_t - sum v_c y_c / sum v_c and its fixed-weight variance."""
    est, var = 0.0, 0.0
    for y, v, sign in ((y_t, v_t, 1.0), (y_c, v_c, -1.0)):
        v = v / v.sum()
        mu = v @ y
        est += sign * mu
        var += np.sum(v ** 2 * (y - mu) ** 2)
    return float(est), float(var)


SE_METHODS = ("balancing", "fixed", "bootstrap")


def _se_method(se, weights, covariates):
    """The SE method: `se`, or by default "balancing" where the balance functions are known (a balancing
    solution's, or `covariates`), else "fixed"."""
    if se is None:
        functions = getattr(getattr(weights, "problem", None), "balance_functions", None)
        return "balancing" if covariates is not None or functions is not None else "fixed"
    return se


def _check_augmented(se: str, augmented: bool) -> None:
    """augmented=True has the balancing (or bootstrap) SE, never the fixed-weight one."""
    if augmented and se == "fixed":
        raise InputError("augmented=True corrects the estimate by the outcome regression on the balance functions "
                         "(a balancing Solution's, or covariates=[...]); its SE is se='balancing' (or 'bootstrap'), "
                         "not the fixed-weight one")


def _estimate(estimand, data, treatment, outcome, weights, arm_weights, se, level, n_boot, seed,
              progress, covariates=None, sample_weights=None, augmented=False) -> Estimate:
    """Shared body of att / atc / ate. `arm_weights(series, index, t, rows)` returns (w_treated, w_control) for the
    rows at positions `rows` of data, labelled `index` in the weights Series `series`, with treatment indicator
    `t`; `sample_weights` (n,) the ATE's weights of the population averaged over."""
    _check_augmented(se, augmented)
    if not data.index.is_unique:
        raise InputError("data has duplicated index labels; weights are matched to rows by index")
    t = _treatment(data, treatment)
    y = _outcome(data, outcome)
    all_rows = np.arange(len(data))
    w_t, w_c = arm_weights(_weight_series(weights), data.index, t, all_rows)
    estimate, var = _contrast(y[t], w_t, y[~t], w_c)
    failed = 0
    if se == "balancing" or augmented:
        corrected, balancing_var = _balancing(estimand, data, t, y, w_t, w_c, weights, covariates, sample_weights)
        estimate = corrected if augmented else estimate
        var = balancing_var if se == "balancing" else var
    if se != "bootstrap":
        std_error = np.sqrt(var)
        z = stats.norm.ppf(0.5 + level / 2)
        lower, upper = estimate - z * std_error, estimate + z * std_error
    else:
        point = _augmented_point(estimand, covariates, sample_weights) if augmented else None
        replicates, failed = _bootstrap(data, t, y, weights, arm_weights, n_boot, seed, progress, point)
        std_error = float(np.std(replicates, ddof=1))
        lower, upper = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(estimand=estimand, estimate=estimate, std_error=float(std_error), ci_lower=float(lower),
                    ci_upper=float(upper), level=level, method=se, n_treated=int(t.sum()),
                    n_control=int((~t).sum()), ess_treated=effective_sample_size(w_t), ess_control=effective_sample_size(w_c),
                    n_failed_replicates=failed, augmented=bool(augmented))


def _balancing(estimand, data, t, y, w_t, w_c, weights, covariates, sample_weights) -> tuple[float, float]:
    """(the augmented estimate, the balancing variance) (`balancing_se`) on the solution's balance functions, or
    on `covariates`."""
    if covariates is not None:
        X = numeric_matrix(data, columns_list(covariates, "covariates"))
        functions = BalanceFunctions({"treated": (data.index[t], X[t]), "control": (data.index[~t], X[~t])})
    else:
        functions = getattr(getattr(weights, "problem", None), "balance_functions", None)
        if functions is None:
            raise InputError("se='balancing' needs the functions the weights balance: pass the Solution of a "
                             "balancing problem (sbw, kernel_sbw, entropy_balance), or covariates=[...]")
    F_t, F_c = functions.rows("treated", data.index[t]), functions.rows("control", data.index[~t])
    arms = ((y[~t], w_c, F_c), (y[t], w_t, F_t))
    if estimand != "ATE":                      # averaged over the target arm, with its sample weights
        return balancing(estimand, arms, (w_t, F_t) if estimand == "ATT" else (w_c, F_c))
    s = np.ones(len(data)) if sample_weights is None else sample_weights
    return balancing(estimand, arms, (np.concatenate([s[~t], s[t]]), np.vstack([F_c, F_t])))


def _augmented_point(estimand, covariates, sample_weights):
    """The augmented estimate on a bootstrap resample, as a function of the resample (data_b: the rows `rows` of
    data) and the weights re-solved on it (`solution`)."""
    def point(data_b, t_b, y_b, w_t, w_c, solution, rows):
        s_b = None if sample_weights is None else sample_weights[rows]
        return _balancing(estimand, data_b, t_b, y_b, w_t, w_c, solution, covariates, s_b)[0]
    return point


def _bootstrap(data, t, y, weights, arm_weights, n_boot, seed, progress, point=None) -> tuple[np.ndarray, int]:
    """Stratified bootstrap in memory: resample rows with replacement within each arm, re-solve the weighting
    problem on the resample (`weights.problem.rebuild(data_b).solve()`), recompute the contrast (or `point`, the
    augmented estimate, on the resample). Returns (estimates, n_failed)."""
    def estimate(rows, solution, data_b):
        y_b, t_b = y[rows], t[rows]
        w_t, w_c = arm_weights(_weight_series(solution), data_b.index, t_b, rows)
        return (_contrast(y_b[t_b], w_t, y_b[~t_b], w_c)[0] if point is None
                else point(data_b, t_b, y_b, w_t, w_c, solution, rows))

    return _replicates(data, t, weights, lambda rows: data.iloc[rows].reset_index(drop=True), estimate, n_boot,
                       seed, progress)


def _replicates(data, t, weights, resample, estimate, n_boot, seed, progress) -> tuple[np.ndarray, int]:
    """The stratified bootstrap's replicate estimates: for each of `n_boot` draws of rows with replacement within
    each arm (positions, treated first, from `numpy.random.default_rng(seed)`), the weighting problem rebuilt and
    solved on `resample(rows)` and `estimate(rows, solution, data_b)` of it; replicates whose solve fails are
    dropped and counted (more than 10% failing raises). Returns (estimates, n_failed)."""
    problem = getattr(weights, "problem", None)
    if not callable(getattr(problem, "rebuild", None)):
        raise InputError("se='bootstrap' needs weights from a counterpoise Solution (with .problem.rebuild) so that "
                         "the weights can be re-estimated on each replicate; a plain Series cannot be")
    problem.rebuild(data)        # fails at once, with its reason, when the problem cannot follow a resample
    rng = np.random.default_rng(seed)
    arms = (np.flatnonzero(t), np.flatnonzero(~t))
    estimates, failures = [], []
    for _ in bar(range(int(n_boot)), "bootstrap", progress):
        rows = np.concatenate([rng.choice(arm, size=arm.size, replace=True) for arm in arms])
        data_b = resample(rows)
        try:
            solution = problem.rebuild(data_b).solve()
        except CounterpoiseError as exc:
            failures.append(exc)
            continue
        estimates.append(estimate(rows, solution, data_b))
    if len(failures) > _MAX_FAILED_SHARE * n_boot or len(estimates) < 2:
        raise SolverError(f"{len(failures)} of {n_boot} bootstrap replicates failed to solve (more than "
                          f"{_MAX_FAILED_SHARE:.0%}); last error: {failures[-1]}")
    return np.asarray(estimates), len(failures)


def _solution_estimand(weights, wanted):
    """Refuse a Solution built for another estimand; return its problem's sample weights (or None)."""
    problem = getattr(weights, "problem", None)
    estimand = getattr(problem, "estimand", None)
    if estimand is not None and estimand != wanted:
        raise InputError(f"these weights solve a {estimand} problem; use estimate.{str(estimand).lower()}() "
                         f"(or rebuild the problem with estimand={wanted!r})")
    return getattr(problem, "sample_weights", None)


def _one_arm(estimand, data, treatment, outcome, weights, sample_weights, se, level, n_boot, seed,
             progress, covariates, augmented) -> Estimate:
    """ATT (controls weighted to the treated) or ATC (treated weighted to the controls)."""
    if is_dask_frame(data):
        return _on_partitions(estimand, data, treatment, outcome, weights, sample_weights, se, level, covariates,
                              augmented, n_boot, seed, progress)
    if sample_weights is None:
        sample_weights = _solution_estimand(weights, estimand)
    else:
        _solution_estimand(weights, estimand)
    s = _sample_weights(data, sample_weights)
    target_arm = "treated" if estimand == "ATT" else "control"

    def arm_weights(series, index, t, rows):
        in_target = t if estimand == "ATT" else ~t
        fixed = s[rows][in_target]
        if fixed.sum() <= 0:
            raise InputError(f"sample_weights of the {target_arm} rows are all zero")
        other = "control" if estimand == "ATT" else "treated"
        weighted = _aligned(series, index[~in_target], other)
        return (fixed, weighted) if estimand == "ATT" else (weighted, fixed)

    return _estimate(estimand, data, treatment, outcome, weights, arm_weights, _se_method(se, weights, covariates),
                     level, n_boot, seed, progress, covariates, augmented=augmented)


def _on_partitions(estimand, data, treatment, outcome, weights, sample_weights, se, level, covariates,
                   augmented, n_boot=200, seed=0, progress=None) -> Estimate:
    """att / atc / ate on a dask DataFrame, with weights from a problem built on it (its `Solution`, or a dask
    Series with the same partitions): the arms' sums over the partitions in two passes (the Hajek means, then the
    squared deviations), and the fixed-weight linearization. For the balancing SE the first pass also gathers each
    arm's weighted regression of the outcome on the balance functions (its triangular factor, stacked over the
    partitions) and the population's sums of the functions, the second the squares of the residuals
    (`balancing_se`'s variances); the augmented estimate is the population's mean of the regressions' contrast.
    se="bootstrap": the in-memory bootstrap's resamples (`_bootstrap_on_partitions`)."""
    if covariates is not None:
        raise InputError("covariates= reads columns in memory; on a dask DataFrame the balancing SE uses the "
                         "functions the solution balanced")
    se = _se_method(se, weights, None)
    _check_augmented(se, augmented)
    if not isinstance(sample_weights, (str, type(None))):
        raise InputError("sample_weights on a dask DataFrame must be a column name (or None: the problem's base "
                         "weights); a Series or an array does not follow the partitions and the resamples")
    if se == "bootstrap":
        point = partial(_on_partitions, estimand, treatment=treatment, outcome=outcome, sample_weights=sample_weights,
                        se="balancing" if augmented else "fixed", level=level, covariates=None, augmented=augmented)
        return _bootstrap_on_partitions(data, treatment, weights, point, n_boot, seed, progress)
    recorded = _solution_estimand(weights, estimand)
    sample_weights = recorded if sample_weights is None else sample_weights
    series = getattr(weights, "weights", weights)
    if not is_dask_frame(series, series=True):
        raise InputError("on a dask DataFrame, weights must be a dask Series with the data's partitions, or the "
                         "solution of a problem built on this DataFrame")
    parts, pieces = data.to_delayed(), series.to_delayed()
    if len(parts) != len(pieces):
        raise InputError(f"the weights have {len(pieces)} partitions and the data {len(parts)}; pass the DataFrame "
                         "the problem was built on")
    functions = getattr(getattr(weights, "problem", None), "balance_functions", None)
    if se == "balancing" and functions is None:
        raise InputError("se='balancing' needs the solution of a balancing problem built on this DataFrame")
    blocks = functions.pieces if se == "balancing" else [None] * len(parts)
    if len(blocks) != len(parts):
        raise InputError(f"the solution's problem has {len(blocks)} partitions and the data {len(parts)}; pass the "
                         "DataFrame the problem was built on")
    options = dict(treatment=treatment, outcome=outcome, sample_weights=sample_weights, estimand=estimand)
    if se == "balancing":
        options.update(goal=functions.goal, columns=functions.columns)
    partitions = DaskBlocks(list(zip(parts, pieces, blocks)))
    sums = partitions.reduce(_arm_sums, combine=_combine_arm_sums, **options)
    counts, mass, totals, squares = sums[:4]
    for arm, label in ((1, "treated"), (0, "control")):
        if not mass[arm] > 0:
            raise InputError(f"the weights of the {label} rows sum to zero (or there are none)")
    means = totals / mass
    estimate = float(means[1] - means[0])
    if se == "balancing":
        fit, corrected = regressions(estimand, *sums[4:], totals)
        estimate = corrected if augmented else estimate
    else:
        fit = (means, np.zeros(2), None)
    deviations = partitions.reduce(_arm_sums, fit=fit, **options)
    variance = np.sum(deviations[0] / mass ** 2)
    if fit[2] is not None:
        variance += deviations[1] / sums[5][0] ** 2
    std_error = float(np.sqrt(variance))
    z = stats.norm.ppf(0.5 + level / 2)
    return Estimate(estimand=estimand, estimate=estimate, std_error=std_error, ci_lower=estimate - z * std_error,
                    ci_upper=estimate + z * std_error, level=level, method=se, n_treated=int(counts[1]),
                    n_control=int(counts[0]), ess_treated=float(mass[1] ** 2 / squares[1]),
                    ess_control=float(mass[0] ** 2 / squares[0]), augmented=bool(augmented))


def _bootstrap_on_partitions(data, treatment, weights, point, n_boot, seed, progress) -> Estimate:
    """The stratified bootstrap of a dask DataFrame, with the in-memory bootstrap's resamples (`_replicates`: the
    rows drawn from `default_rng(seed)` by their positions, so the treatment column comes to the client): each
    resample is built on the partitions, every partition repeating its own drawn rows, labelled by their positions
    in the in-memory resample (as its reset index: the kernel's landmarks, drawn by label, are the same), and the
    problem is rebuilt and solved on it; `point(data_b, weights=solution)` is the estimate of a replicate. The
    point estimate and the arms' sizes are those of the full data."""
    full = point(data, weights=weights)
    t = treatment_indicator(data[[treatment]].compute(), treatment) == 1
    lengths = np.asarray(data.map_partitions(len).compute())
    replicates, failed = _replicates(data, t, weights, partial(_resampled_partitions, data, lengths),
                                     lambda rows, solution, data_b: point(data_b, weights=solution).estimate, n_boot,
                                     seed, progress)
    lower, upper = np.quantile(replicates, [(1 - full.level) / 2, (1 + full.level) / 2])
    return dataclasses.replace(full, std_error=float(np.std(replicates, ddof=1)), ci_lower=float(lower),
                               ci_upper=float(upper), method="bootstrap", n_failed_replicates=failed)


def _resampled_partitions(data, lengths, rows):
    """The resample data.iloc[rows].reset_index(drop=True) as a dask DataFrame with data's partitions: partition p
    holds the draws of its own rows, labelled by the draws' positions j (in order of j)."""
    import dask

    offsets = np.concatenate([[0], np.cumsum(lengths)])
    order = np.argsort(rows, kind="stable")
    cuts = np.searchsorted(rows[order], offsets)
    draws = [np.sort(order[cuts[p]: cuts[p + 1]]) for p in range(len(lengths))]
    plan = dask.delayed([(rows[drawn] - offsets[p], drawn) for p, drawn in enumerate(draws)], traverse=False)
    return data.map_partitions(_drawn_rows, plan, meta=data._meta.reset_index(drop=True), clear_divisions=True,
                               align_dataframes=False)


def _drawn_rows(frame, plan, partition_info=None) -> pd.DataFrame:
    """A partition's drawn rows (`plan`: per partition, the positions of its draws and their labels)."""
    positions, labels = plan[partition_info["number"]]
    drawn = frame.iloc[positions]
    drawn.index = pd.Index(labels)
    return drawn


def _arm_sums(part, weights, block, treatment, outcome, sample_weights, estimand, goal=None, columns=None, fit=None):
    """One partition's (control, treated) sums: units, sum v, sum v y, sum v^2, with v the sample weights s in the
    target arm of an ATT / ATC and the balancing weights elsewhere.

    With the partition's balance functions (`block`, centred at `goal`; D = [1, f]): also each arm's
    `balancing_se.regression_factor` and the population's s'D (`balancing_se.regressions`). With a `fit` (theirs,
    or the arms' means as coefficients of D = 1 without functions): the second pass, each arm's
    `balancing_se.residual_sum` and, for an ATE, the population's `effect_sum`."""
    t = treatment_indicator(part, treatment, both_arms=False) == 1
    y = _outcome(part, outcome)
    s = np.ones(len(part)) if sample_weights is None else _sample_weights(part, sample_weights)
    weighted = np.ones(len(part), bool) if estimand == "ATE" else ~t if estimand == "ATT" else t
    labels = part.index[weighted]
    missing = ~labels.isin(weights.index)
    if missing.any():
        raise InputError(f"weights are missing for {int(missing.sum())} weighted rows (e.g. index labels "
                         f"{labels[missing][:3].tolist()})")
    v = s.copy()
    v[weighted] = finite(weights.reindex(labels).to_numpy(dtype=float), "weights")
    arms = (~t, t)
    D = np.ones((len(part), 1)) if block is None else design(centred(block[0]["X"], goal, columns))
    if fit is not None:
        betas, shifts, effect = fit
        arm_terms = np.array([residual_sum(y[arm], v[arm], D[arm], beta, shift)
                              for arm, beta, shift in zip(arms, betas, shifts)])
        return arm_terms, (0.0 if effect is None else effect_sum(s, D, *effect))
    sums = (np.array([float(arm.sum()) for arm in arms]), np.array([v[arm].sum() for arm in arms]),
            np.array([v[arm] @ y[arm] for arm in arms]), np.array([v[arm] @ v[arm] for arm in arms]))
    if block is None:
        return sums
    population = np.ones(len(part), bool) if estimand == "ATE" else ~weighted
    return sums + ([regression_factor(y[arm], v[arm], D[arm]) for arm in arms], s[population] @ D[population])


def _combine_arm_sums(a, b) -> tuple:
    """Two partitions' first-pass sums together: the arms' triangular factors stacked and factored again, the rest
    added."""
    if len(a) == 4:
        return tuple(x + y for x, y in zip(a, b))
    factors = [triangular_factor(np.vstack([x, y])) for x, y in zip(a[4], b[4])]
    return tuple(x + y for x, y in zip(a[:4], b[:4])) + (factors, a[5] + b[5])


#: The options every effect estimate declares (`validation.validated`).
OPTIONS = dict(se=optional(one_of(SE_METHODS)), level=interval(0, 1, closed=False), n_boot=whole_number(2))


@validated(**OPTIONS)
def att(data, treatment, outcome, weights, sample_weights=None, se=None, level=0.95, n_boot=200, seed=0,
        progress=None, covariates=None, augmented=False) -> Estimate:
    """Average treatment effect on the treated, Hajek form.

        ATT = sum_treated s_i Y_i / sum_treated s_i  -  sum_control w_i Y_i / sum_control w_i

    with s the `sample_weights` (a column name, a Series on data.index, or an array; by default the base weights
    the problem was built with, else uniform) and w the balancing `weights` (already including any design
    weights of the controls).

    `treatment` and `outcome` are column names of `data`; the treatment is 0/1. `weights` is a Series indexed by
    data.index labels covering every control row (entries for treated rows are ignored), or a Solution whose
    `.weights` is such a Series (a Solution of a non-ATT problem is refused).

    se="balancing" (the default for a balancing Solution, or with `covariates`, columns of data to residualize
    on): the outcome residualized on the balance functions (`balancing_se`), a normal interval at `level`.
    se="fixed" (the default for a plain Series): the weights held fixed (module docstring). Neither counts the
    uncertainty of estimating the weights beyond the balance they impose. se="bootstrap": `n_boot` stratified
    resamples of the rows with `numpy.random.default_rng(seed)`, the weights re-estimated on each through
    `weights.problem.rebuild(data_b)`; SE = SD of the replicate estimates (ddof=1), percentile interval.
    Replicates whose solve raises a counterpoise error are dropped and counted; more than 10% failing raises
    SolverError. `progress`: a progress bar over the replicates (None: when stderr is a terminal). On a dask
    DataFrame (with the solution of a problem built on it): se="balancing" (the default) or "fixed" in two passes
    over the partitions, or the bootstrap with the in-memory resamples, each built and solved on the partitions
    (the treatment column comes to the client to draw them).

    augmented=True: the bias-corrected ATT, the treated's mean residual off the controls' weighted regression of
    the outcome on the balance functions, ATT + (sum_control v_i f_i - sum_treated s_i f_i)' beta0: the residual
    imbalance a tolerance leaves is no longer a bias, and the balancing SE (or the bootstrap, which recomputes it
    on every resample) is its SE; se="fixed" is refused with it. Equal to the plain ATT at exact balance.
    """
    return _one_arm("ATT", data, treatment, outcome, weights, sample_weights, se, level, n_boot, seed, progress,
                    covariates, augmented)


@validated(**OPTIONS)
def atc(data, treatment, outcome, weights, sample_weights=None, se=None, level=0.95, n_boot=200, seed=0,
        progress=None, covariates=None, augmented=False) -> Estimate:
    """Average treatment effect on the controls, Hajek form: the weighted treated mean minus the (sample-weighted)
    control mean. Arguments, standard errors and `augmented` as in `att`, with the arms' roles swapped."""
    return _one_arm("ATC", data, treatment, outcome, weights, sample_weights, se, level, n_boot, seed, progress,
                    covariates, augmented)


@validated(**OPTIONS)
def ate(data, treatment, outcome, weights, se=None, level=0.95, n_boot=200, seed=0, progress=None,
        covariates=None, augmented=False) -> Estimate:
    """Average treatment effect, Hajek form: each arm weighted to the full sample, weights normalized within arm.

        ATE = sum_treated w_i Y_i / sum_treated w_i  -  sum_control w_i Y_i / sum_control w_i

    `weights` (a Series on data.index, or a Solution with `.weights`) must cover every row. Standard errors as in
    `att`: balancing (the default for a balancing Solution), fixed weights, or the stratified bootstrap that
    re-estimates the weights; the balancing SE averages the effect over the sample weights the problem was built
    with (uniform by default). augmented=True: the bias-corrected ATE, sum_i u_i (m1(x_i) - m0(x_i)) with m1, m0
    the arms' weighted regressions of the outcome on the balance functions and u those sample weights. A dask
    DataFrame (with the solution of a problem built on it) takes every SE, as in `att`.
    """
    if is_dask_frame(data):
        return _on_partitions("ATE", data, treatment, outcome, weights, None, se, level, covariates, augmented, n_boot,
                              seed, progress)
    recorded = _solution_estimand(weights, "ATE")

    def arm_weights(series, index, t, rows):
        return _aligned(series, index[t], "treated"), _aligned(series, index[~t], "control")

    s = None if recorded is None else _sample_weights(data, recorded)
    return _estimate("ATE", data, treatment, outcome, weights, arm_weights, _se_method(se, weights, covariates),
                     level, n_boot, seed, progress, covariates, s, augmented)
