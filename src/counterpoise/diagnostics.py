"""Balance diagnostics: standardized mean differences with fixed denominators, effective sample size, design effect.

Conventions (see the module functions for the formulas):

- Standardized mean differences (SMDs) divide by standard deviations fixed *before* weighting
  (`smd_denominators`), so the "before" and "after" columns of a balance table share one scale (cobalt's default;
  balance's `std_type="target"` is the same choice of population). The SMD is signed: (weighted mean - target) / sd.
  Its absolute value is the target-population ASMD (TASMD).
- Effective sample size and design effect are Kish's: ESS = (sum w)^2 / sum w^2, deff = n sum w^2 / (sum w)^2 = n / ESS.
- Weights are non-negative. A weight below -1e-8 * max|w| is an error; smaller negatives (solver round-off) are
  kept as they are.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass

import numpy as np
import pandas as pd
import scipy.sparse

from counterpoise.columns import max_abs, weighted_sums
from counterpoise.errors import InputError
from counterpoise.validation import matrix, vector, weights as weight_vector

_KINDS = ("mean", "total")

#: The SMD denominators of `smd_denominators`, in words (for tables and plots a person reads).
SD_WORDS = {"target": "the target population's SD", "pooled": "the pooled SD of the two arms",
            "treated": "the treated arm's SD", "control": "the control arm's SD"}
_BALANCE_COLUMNS = ["target", "before", "after", "smd_before", "smd_after", "rel_error_before", "rel_error_after"]


def _group_labels(groups: np.ndarray) -> list:
    """Distinct group labels in order of first appearance."""
    return list(dict.fromkeys(groups.tolist()))


@dataclass(frozen=True, eq=False)
class BalanceDesign:
    """What a balance table compares: covariates of the weighted units against their targets.

    Attributes
    ----------
    names : p covariate (term) names.
    X : (n_w, p) raw covariate values of the weighted units.
    groups : (n_w,) label per weighted unit: all "control" for the ATT; "treated" / "control" for the ATE (each
        arm weighted to the full sample); "sample" for calibration.
    base_weights : (n_w,) weights before adjustment (ones, or design weights).
    targets : group label -> (p,) target per covariate: a mean when kind == "mean", a population total when
        kind == "total".
    denominators : name -> (p,) standard deviations fixed before weighting (keys among "target", "pooled",
        "treated", "control"; see `smd_denominators`).
    std : the default denominator key.
    kind : "mean" compares weighted means (weights normalized within group); "total" compares weighted totals.
    population_size : kind == "total" only: group label -> population size N that turns totals into means for SMDs
        (None: the group's sum of weights).
    offset : kind == "mean" only: (p,) values subtracted from X (a builder centres its matrix at the targets); the
        table reports means of X plus the offset (None: X as it is).

    Arrays are validated and stored as numpy arrays (X is kept as given, a view of the problem's matrix when a
    builder made it). Equality is identity (arrays have no single truth value).
    """

    names: tuple[str, ...]
    X: np.ndarray
    groups: np.ndarray
    base_weights: np.ndarray
    targets: dict
    denominators: dict
    std: str = "target"
    kind: str = "mean"
    population_size: dict | None = None
    offset: np.ndarray | None = None
    checked: InitVar[bool] = False     # X comes from a builder that has checked it already (no second pass)

    def __post_init__(self, checked):
        X = self.X if checked else matrix(self.X, "X")
        n, p = X.shape
        names = tuple(str(name) for name in self.names)
        if len(names) != p:
            raise InputError(f"names has {len(names)} entries but X has {p} columns")
        groups = np.asarray(self.groups)
        if groups.shape != (n,):
            raise InputError(f"groups must have shape ({n},), got {groups.shape}")
        labels = _group_labels(groups)
        base_weights = weight_vector(self.base_weights, "base_weights", n)
        if self.kind not in _KINDS:
            raise InputError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        missing = [g for g in labels if g not in self.targets]
        if missing:
            raise InputError(f"targets has no entry for groups {missing}")
        targets = {g: vector(v, f"targets[{g!r}]", p) for g, v in self.targets.items()}
        denominators = {k: _denominator(v, f"denominators[{k!r}]", p) for k, v in self.denominators.items()}
        if self.std not in denominators:
            raise InputError(f"std={self.std!r} is not among the denominators {list(denominators)}")
        _check_positive(denominators[self.std], self.std, names)
        population_size = self.population_size
        if population_size is not None:
            if self.kind != "total":
                raise InputError("population_size is only used when kind == 'total'")
            missing = [g for g in labels if g not in population_size]
            if missing:
                raise InputError(f"population_size has no entry for groups {missing}")
            if any(not np.isfinite(population_size[g]) or population_size[g] <= 0 for g in labels):
                raise InputError("population_size values must be finite and positive")
            population_size = {g: float(v) for g, v in population_size.items()}
        offset = None if self.offset is None else vector(self.offset, "offset", p)
        if offset is not None and self.kind != "mean":
            raise InputError("offset is only used when kind == 'mean'")
        for field, value in [("names", names), ("X", X), ("groups", groups), ("base_weights", base_weights),
                             ("targets", targets), ("denominators", denominators),
                             ("population_size", population_size), ("offset", offset)]:
            object.__setattr__(self, field, value)

    #: the weights are an in-memory array (a design on a Dask collection's partitions has its own sums:
    #: `partitioned.SumsOverPartitions`, with these three methods)
    in_memory = True

    @property
    def size(self) -> int:
        """The number of weighted units."""
        return len(self.base_weights)

    def table(self, weights, std=None) -> pd.DataFrame:
        """The balance table of `weights` (`balance_table`)."""
        return balance_table(self, np.asarray(weights, dtype=float), std=std)

    def ess(self, weights):
        """Kish's ESS of the weights (a Series on the weighted units): a float, or a Series per group when there
        are several."""
        if len(np.unique(self.groups)) == 1:
            return effective_sample_size(weights.to_numpy())
        return weights.groupby(self.groups).apply(lambda w: effective_sample_size(w.to_numpy()))

    def weight_summary(self, weights) -> pd.DataFrame:
        return weight_summary(weights.to_numpy(), self.base_weights, self.groups)


def _denominator(sd, what, p):
    """SMD denominators: a vector of shape (p,), finite except NaN where a column has no SMD by design."""
    sd = np.asarray(sd, dtype=float)
    vector(np.where(np.isnan(sd), 1.0, sd), what, p)
    return sd


def _check_positive(sd, key, names):
    """Every denominator positive; NaN marks a column with no SMD by design (a calibration total of a constant
    column, judged by its relative error)."""
    zero = [names[j] for j in np.flatnonzero(~(sd > 0) & ~np.isnan(sd))]
    if zero:
        raise InputError(f"{zero} have zero {key!r} standard deviation (constant among those rows), so SMDs on that "
                         "scale are undefined; choose another std (e.g. std='pooled')")


def weighted_sds(X: np.ndarray, W: np.ndarray, sample: bool = True, chunk: int = 16_384) -> np.ndarray:
    """Weighted SDs per column, one row per weight vector (a column of W, zero outside its subset).

    With xbar = sum w x / sum w and S = sum w (x - xbar)^2:

    - sample=True: the unbiased variance for reliability weights, S / (sum w - sum w^2 / sum w) (cobalt's
      col_w_sd); with equal weights it is R's sd(), S / (n - 1), and it does not change when w is rescaled. A subset
      with one positive weight has SD 0 (R's sd() gives NA there).
    - sample=False: the population SD, S / sum w (glmnet's and balnet's standardization).

    Two passes over a dense X in row chunks, no copy of X; one over the stored entries of a sparse X.
    """
    totals = W.sum(axis=0)
    means = weighted_sums(W, X) / totals[:, None]
    if scipy.sparse.issparse(X):       # sum w x^2 - xbar^2 sum w: one pass over the stored entries
        squares = np.maximum(weighted_sums(W, X, squares=True) - means ** 2 * totals[:, None], 0.0)
    else:
        squares = _squared_deviations(X, W, means, chunk)
    if not sample:
        return np.sqrt(squares / totals[:, None])
    return sds_from_sums(squares, totals[:, None], (W ** 2).sum(axis=0)[:, None])


def sds_from_sums(squares, total, total_squares):
    """The sample SD for reliability weights, sqrt(S / (sum w - sum w^2 / sum w)) with S = sum w (x - xbar)^2,
    from S, sum w and sum w^2 (broadcast alike); 0 where a single unit holds the weight."""
    effective = total - total_squares / total
    single = effective <= 1e-12 * total
    return np.sqrt(squares / np.where(single, 1.0, effective)) * ~single


def rounding_to_zero(sd, largest):
    """The SDs with those at most 1e-12 x the column's largest |x| set to 0: a column constant up to rounding."""
    return np.where(sd <= 1e-12 * largest, 0.0, sd)


def _squared_deviations(X, W, means, chunk):
    """sum_i w_i (x_ij - xbar_j)^2 per weight vector and column, in row chunks of a dense X."""
    squares = np.zeros_like(means)
    for start in range(0, X.shape[0], chunk):
        Xc, Wc = X[start:start + chunk], W[start:start + chunk]
        for j in range(W.shape[1]):
            deviations = Xc - means[j]
            deviations *= deviations
            squares[j] += Wc[:, j] @ deviations
    return squares


def resampled_imbalance(counts, weights, A) -> np.ndarray:
    """The imbalance of fixed weights on resamples: for each resample (a row of `counts`, how often it draws each
    unit: 0/1 for a subsample) and each weight vector w of `weights`,

        mean_j | sum_i c_i w_i A_ij / sum_i c_i w_i |,     A the units' balance columns, centred and scaled,

    as a (resamples x weight vectors) array (NaN where a resample holds no weight)."""
    return imbalance_of(*resampled_sums(counts, weights, A))


def imbalance_of(sums, mass) -> np.ndarray:
    """`resampled_imbalance` from its sums over the units (`resampled_sums`, added over row blocks)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(sums / mass[:, :, None]).mean(axis=2).T


def resampled_sums(counts, weights, A) -> tuple:
    """(sum_i c_i w_i A_ij per weight vector, resample and column; sum_i c_i w_i per weight vector and resample):
    the sums of `resampled_imbalance`, which add over blocks of units. They run over blocks of units, every weight
    vector on a block while it is in cache, so A is read once, not once per weight vector."""
    n, k = A.shape
    sums = np.zeros((len(weights), len(counts), k))
    mass = np.zeros((len(weights), len(counts)))
    block = max(1, 2 ** 20 // max(k, 1))
    for first in range(0, n, block):
        rows = slice(first, min(first + block, n))
        c = np.asarray(counts[:, rows], dtype=float)
        for g, w in enumerate(weights):
            cw = c * w[rows]
            sums[g] += cw @ A[rows]
            mass[g] += cw.sum(axis=1)
    return sums, mass


def smd_denominators(X, treatment=None, target_rows=None, base_weights=None) -> dict[str, np.ndarray]:
    """Standard deviations that standardize mean differences, fixed before any weighting.

    Each is the base-weighted sample SD over the rows concerned, sqrt(sum d (x - xbar)^2 / (sum d - sum d^2 / sum d))
    with xbar = sum d x / sum d, where d are `base_weights` (ones by default): R's sd() when d is constant, and
    cobalt's weighted SD otherwise (see `weighted_sds`). Binary columns get the same formula (R's sd(); cobalt's
    bal.tab uses p (1 - p) for them instead).

    Keys: "target", over `target_rows` (a boolean mask; all rows if None); and, when `treatment` (0/1 per row) is
    given, "treated" (rows with 1), "control" (rows with 0) and "pooled" = sqrt((var_treated + var_control) / 2),
    cobalt's pooled SD (an average of the two variances, not weighted by arm size).

    A column that is constant within the rows concerned gets SD 0; using that key to standardize raises (see
    `balance_table`), so only the denominator actually used has to be positive.
    """
    X = X if scipy.sparse.issparse(X) else matrix(X, "X")
    n = X.shape[0]
    d = np.ones(n) if base_weights is None else weight_vector(base_weights, "base_weights", n)
    subsets = {}
    if target_rows is None:
        subsets["target"] = np.ones(n, dtype=bool)
    else:
        mask = np.asarray(target_rows)
        if mask.dtype != bool or mask.shape != (n,):
            raise InputError(f"target_rows must be a boolean mask of shape ({n},), got dtype {mask.dtype}, shape {mask.shape}")
        subsets["target"] = mask
    if treatment is not None:
        t = np.asarray(treatment)
        if t.shape != (n,):
            raise InputError(f"treatment must have shape ({n},), got {t.shape}")
        if not np.all(np.isin(t, [0, 1])):
            raise InputError("treatment must be 0/1 (or boolean)")
        subsets["treated"] = t == 1
        subsets["control"] = t == 0
    for key, rows in subsets.items():
        if d[rows].sum() <= 0:
            raise InputError(f"no rows with positive base weight for the {key!r} denominator")
    keys = list(subsets)
    distinct = {}                                   # the target rows are often the treated rows: compute once
    for key in keys:
        distinct.setdefault(subsets[key].tobytes(), key)
    columns = [np.where(subsets[key], d, 0.0) for key in distinct.values()]
    values = dict(zip(distinct.values(), weighted_sds(X, np.column_stack(columns))))
    scale = max_abs(X)
    sds = {}
    for key in keys:
        sds[key] = rounding_to_zero(values[distinct[subsets[key].tobytes()]], scale)
    if treatment is not None:
        sds["pooled"] = np.sqrt((sds["treated"] ** 2 + sds["control"] ** 2) / 2)
    return sds


def _relative_error(value: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(value - target) / |target| where target != 0, and the absolute error value - target where target == 0."""
    scale = np.where(target == 0, 1.0, np.abs(target))
    return (value - target) / scale


def balance_table(design: BalanceDesign, weights, std: str | None = None) -> pd.DataFrame:
    """Balance of every term in every group, before (base weights) and after (`weights`) adjustment.

    kind "mean": before / after = sum_i w_i x_i / sum_i w_i within the group, and
        smd = (mean - target) / sd.
    kind "total": before / after = sum_i w_i x_i within the group, and
        smd = (total - target) / (N sd), N = design.population_size[group], or the group's sum of the weights
        concerned (base weights before, `weights` after) when population_size is None.
    sd = design.denominators[std or design.std], the same before and after. The SMD is signed; for the ATT the
    target is the treated mean, so it is the usual control-minus-treated SMD.
    rel_error = (value - target) / |target|, or value - target where the target is 0.

    `weights` is a 1-D array or Series of the design's row length, read by position (row i of design.X).
    Returns a DataFrame indexed by ("group", "term") with columns
    target, before, after, smd_before, smd_after, rel_error_before, rel_error_after.
    """
    w = weight_vector(weights, "weights", design.X.shape[0])
    key = design.std if std is None else std
    if key not in design.denominators:
        raise InputError(f"std={key!r} is not among the design's denominators {list(design.denominators)}")
    sd = design.denominators[key]
    _check_positive(sd, key, design.names)

    blocks = []
    for group in _group_labels(design.groups):
        rows = design.groups == group
        X = design.X if rows.all() else design.X[rows]
        d, wg = design.base_weights[rows], w[rows]
        size = None if design.population_size is None else design.population_size[group]
        blocks.append(_group_balance(design.names, group, design.kind, design.targets[group], (d @ X, d.sum()),
                                     (wg @ X, wg.sum()), sd, design.offset, size))
    table = pd.concat(blocks, ignore_index=True).set_index(["group", "term"])[_BALANCE_COLUMNS]
    table.attrs["std"] = key            # which denominator the SMDs use (the love plot names it)
    return table


def group_balance_table(names, group, kind, target, before, after, sd, offset=None, size=None,
                        std="target") -> pd.DataFrame:
    """The balance table of one group from its sums: `before` / `after` are (sum_i w_i x_i, sum_i w_i) under the
    base weights and the weights (for kind "mean" of the rows minus `offset`), `sd` the denominators `std` names;
    as `balance_table` computes them."""
    _check_positive(sd, std, names)
    table = _group_balance(names, group, kind, target, before, after, sd, offset, size)
    table = table.set_index(["group", "term"])[_BALANCE_COLUMNS]
    table.attrs["std"] = std
    return table


def _group_balance(names, group, kind, target, before, after, sd, offset=None, size=None) -> pd.DataFrame:
    """One group's rows of the balance table, from (sum_i w_i x_i, sum_i w_i) under the base weights (`before`)
    and the weights (`after`): means (kind "mean", plus `offset`) or totals (kind "total", SMDs over N sd with N
    = `size`, or the sum of the weights concerned when None)."""
    def compare(sums, mass, name):
        if mass <= 0:
            raise InputError(f"{name} of group {group!r} sum to zero")
        if kind == "mean":
            centred = sums / mass
            if offset is None:
                return centred, (centred - target) / sd
            return centred + offset, (centred + (offset - target)) / sd
        return sums, (sums - target) / ((mass if size is None else size) * sd)

    value_before, smd_before = compare(*before, "base_weights")
    value_after, smd_after = compare(*after, "weights")
    return pd.DataFrame({
        "group": group, "term": list(names), "target": target, "before": value_before, "after": value_after,
        "smd_before": smd_before, "smd_after": smd_after,
        "rel_error_before": _relative_error(value_before, target),
        "rel_error_after": _relative_error(value_after, target)})


def _smd_column(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        raise InputError(f"column {column!r} is not in the balance table (columns: {list(table.columns)})")
    return np.abs(table[column].to_numpy(dtype=float))


def max_abs_smd(table: pd.DataFrame, column: str = "smd_after") -> float:
    """max over rows of |table[column]|: the worst standardized imbalance (rows without an SMD, NaN, skipped)."""
    values = _smd_column(table, column)
    return float(np.nanmax(values)) if not np.isnan(values).all() else np.nan


def mean_abs_smd(table: pd.DataFrame, column: str = "smd_after") -> float:
    """Mean over rows of |table[column]| (each term and group counts once; rows without an SMD, NaN, skipped)."""
    values = _smd_column(table, column)
    return float(np.nanmean(values)) if not np.isnan(values).all() else np.nan


def effective_sample_size(w) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2; invariant to rescaling w."""
    w = weight_vector(w, "w")
    if w.sum() <= 0:
        raise InputError("w sums to zero; the effective sample size is undefined")
    return float(w.sum() ** 2 / np.sum(w ** 2))


def design_effect(w) -> float:
    """Kish's design effect n sum w^2 / (sum w)^2 = n / ESS, with n = len(w) (zero weights count in n)."""
    w = weight_vector(w, "w")
    return float(w.size / effective_sample_size(w))


def _top_share(w: np.ndarray, fraction: float = 0.01) -> float:
    """Share of sum w held by the k largest weights, k = max(1, floor(fraction * n))."""
    k = max(1, int(np.floor(fraction * w.size)))
    return float(np.sort(w)[::-1][:k].sum() / w.sum())


def weight_summary(weights, base_weights=None, groups=None) -> pd.DataFrame:
    """Summary of the weights, one row per group (or one row "all" when `groups` is None).

    Columns: n, n_nonzero (w > 0), sum, ess (Kish), design_effect (Kish, n / ess), max_weight_ratio = max w / mean w,
    max_ratio_to_base = max w_i / d_i over units with d_i > 0 (only when `base_weights` d are given), and
    top_1pct_share, the share of the group's total weight held by its largest 1% of units (at least one unit).
    """
    w = weight_vector(weights, "weights")
    n = w.size
    d = None if base_weights is None else weight_vector(base_weights, "base_weights", n)
    if groups is None:
        labels = np.full(n, "all", dtype=object)
    else:
        labels = np.asarray(groups)
        if labels.shape != (n,):
            raise InputError(f"groups must have shape ({n},), got {labels.shape}")
    rows = {}
    for group in _group_labels(labels):
        wg = w[labels == group]
        if wg.sum() <= 0:
            raise InputError(f"weights of group {group!r} sum to zero")
        row = {"n": wg.size, "n_nonzero": int(np.sum(wg > 0)), "sum": float(wg.sum()),
               "ess": effective_sample_size(wg), "design_effect": design_effect(wg),
               "max_weight_ratio": float(wg.max() / wg.mean())}
        if d is not None:
            dg = d[labels == group]
            positive = dg > 0
            row["max_ratio_to_base"] = float(np.max(wg[positive] / dg[positive])) if positive.any() else np.nan
        row["top_1pct_share"] = _top_share(wg)
        rows[group] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "group"
    return table
