"""The calibration system: population totals as targets on the columns of a matrix X, and the checks made before
solving.

    margin_targets   the margins' targets from the number of units at each level (every level in the data needs
                     a total; a positive total needs units), and the column of each level
    system_matrix    X from the margins' level codes and the numeric targets' columns: CSR when mostly zeros
    check_reachable  every total within the range the bounds allow, alone and with a target's units held down
    independent_targets  exactly redundant targets dropped, after checking they agree
    calibration_terms    the distance, totals and bounds terms of one calibration

The checks are sums over row blocks (X, d) (`backends.blocks`), so they run alike on data in memory and on the
partitions of a Dask DataFrame (`families.on_dask`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse

from ..backends.blocks import Blocks
from ..backends.rows import Rows
from ..columns import column, has_negative
from ..diagnostics import BalanceDesign, smd_denominators
from ..errors import InfeasibleError, InputError
from ..terms import Balance, Bounds, Entropy, Linear, Logit
from ..validation import finite, numeric_matrix, warn


def calibration_bounds(distance, bounds, weight_bounds):
    """(ratio bounds (L, U), weight bounds (lo, hi)) as pairs of floats (+-inf where open), checked: logit needs
    0 <= L < 1 < U < inf, other ratio bounds must admit g = 1."""
    lower, upper = _pair(bounds, "bounds")
    if distance == "logit":
        if bounds is None:
            raise InputError('distance="logit" needs finite ratio bounds, e.g. bounds=(0.5, 2.0), with L < 1 < U')
        if not (0 <= lower < 1 < upper < np.inf):
            raise InputError(f"logit bounds must satisfy 0 <= L < 1 < U < inf, got {bounds}")
    elif bounds is not None:
        _check_ratio_bounds(lower, upper)
    return (lower, upper), _pair(weight_bounds, "weight_bounds")


def calibration_terms(X, T, names, d, keep, distance, bounds=None, weight_bounds=None, tol=None) -> list:
    """[distance, totals, bounds...]: the terms of the calibration of base weights d to the totals T[keep] of X's
    columns `keep` (bounds already checked by `calibration_bounds`)."""
    (lower, upper), (weight_lower, weight_upper) = calibration_bounds(distance, bounds, weight_bounds)
    if distance == "linear":
        terms = [Linear(d, name="distance")]
    elif distance == "raking":
        terms = [Entropy(d, name="distance")]
    else:
        terms = [Logit(d, lower, upper, name="distance")]
    terms.append(totals_term(X, T, names, keep, tol))
    if bounds is not None and distance != "logit":
        terms.append(Bounds(lower=None if lower == -np.inf else lower, upper=None if upper == np.inf else upper,
                            reference=d, name="ratio_bounds"))
    if weight_bounds is not None:
        terms.append(Bounds(lower=None if weight_lower == -np.inf else weight_lower,
                            upper=None if weight_upper == np.inf else weight_upper, name="weight_bounds"))
    return terms


def target_scales(T) -> np.ndarray:
    """The scale of each target's misfit: |T| (relative), 1 for a zero total."""
    return np.where(T != 0, np.abs(T), 1.0)


def totals_term(X, T, names, keep, tol):
    """Balance on the totals T[keep] of X's columns `keep` at relative scale |T| (1 for a zero total)."""
    relative = target_scales(T)
    selected = None if len(keep) == X.shape[1] else keep          # X itself, its columns selected (no copy)
    return Balance(X, T[keep], delta=tol, scale=relative[keep], columns=[names[j] for j in keep], name="totals",
                   column_index=selected)


def independent_targets(X, T, names, d, tol):
    """The targets a calibration holds: all of them with a tolerance `tol`; else the exactly redundant ones are
    dropped, after checking they agree."""
    return independent_targets_of(Blocks([(X, d)]), T, names) if tol is None else np.arange(len(T))


def _pair(value, what):
    if value is None:
        return -np.inf, np.inf
    try:
        lo, hi = (float(v) if v is not None else np.nan for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a pair (lower, upper), got {value!r}") from None
    lo = -np.inf if np.isnan(lo) else lo
    hi = np.inf if np.isnan(hi) else hi
    if not lo < hi:
        raise InputError(f"{what}: lower {lo} must be below upper {hi}")
    return lo, hi


def _check_ratio_bounds(lower, upper):
    if not (lower <= 1 <= upper):
        raise InputError(f"ratio bounds ({lower}, {upper}) exclude g = 1, the base weights themselves; "
                         "bounds on g = w/d should satisfy L <= 1 <= U")


def check_reachable(blocks, T, names, ratio_bounds, weight_bounds, nonnegative):
    """Before solving: every target on a nonnegative column must lie between the totals the bounds allow,
    sum_i lo_i x_ij <= T_j <= sum_i hi_i x_ij, with lo_i, hi_i the bounds on w_i (raking keeps w >= 0). A target
    at its lowest reachable total holds every unit with x_ij > 0 at its lower bound; the other targets must still
    be reachable then, or the target that holds them down is named. `blocks`: the row blocks (X, d) of the
    calibration matrix and base weights (`backends.blocks`: in memory, or a Dask collection's partitions)."""
    options = dict(ratio_bounds=ratio_bounds, weight_bounds=weight_bounds, nonnegative=nonnegative)
    empty, low, low_infinite, high, high_infinite, negative, units = blocks.reduce(_reach_sums, **options)
    if empty:
        raise InfeasibleError("the ratio bounds and the weight bounds leave no room for some units' weights")
    low, high = np.where(low_infinite > 0, -np.inf, low), np.where(high_infinite > 0, np.inf, high)
    columns = np.flatnonzero(negative == 0)
    slack = 1e-9 * np.maximum(np.abs(T), 1.0)
    for j in columns:
        if not (low[j] - slack[j] <= T[j] <= high[j] + slack[j]):
            raise InfeasibleError(f"target {names[j]} = {T[j]:g} is out of reach: the bounds on the weights allow "
                                  f"totals between {low[j]:g} and {high[j]:g} for it; widen the bounds",
                                  binding=[names[j]])
    for j in columns:
        if not (np.isfinite(low[j]) and T[j] <= low[j] + slack[j] and units[j]):
            continue
        high_held, infinite = blocks.reduce(_held_reach_sums, held=j, **options)   # j's units at their lowest
        high_held = np.where(infinite > 0, np.inf, high_held)
        for k in columns:
            if T[k] > high_held[k] + slack[k]:
                raise InfeasibleError(
                    f"target {names[j]} = {T[j]:g} can only be met with every unit where {names[j]} > 0 at its "
                    f"lowest weight ({int(units[j])} units), and then target {names[k]} = {T[k]:g} is out "
                    f"of reach (at most {high_held[k]:g}); change the total of {names[j]}",
                    binding=[names[j], names[k]])


def warn_unless_nonnegative_reach(blocks, T, names, ratio_bounds, weight_bounds):
    """Linear calibration reaches totals that no nonnegative weights reach (with negative weights): say which."""
    try:
        check_reachable(blocks, T, names, ratio_bounds, weight_bounds, nonnegative=True)
    except InfeasibleError as exc:
        names = exc.binding or ["these totals"]          # None: the bounds leave a unit no room at all
        others = ", ".join(names[1:]) or "the bounds"
        warn(f"no nonnegative weights meet the total of {names[0]} (with {others}); linear (GREG) calibration will "
             "make some weights negative, as survey allows; bounds=(0, U) or distance='raking' keep weights positive "
             "where the totals allow")


def negative_weights_note(count, n, smallest) -> str:
    """What is said after an optimal linear calibration that made `count` of `n` weights negative."""
    return (f"{count} of {n} weights are negative (smallest {smallest:.6g}): linear (GREG) calibration allows them; "
            "bounds=(0, U) or distance='raking' keep weights positive")


def _weight_box(d, ratio_bounds, weight_bounds, nonnegative):
    """The bounds lo_i <= w_i <= hi_i that the ratio bounds, the weight bounds (and w >= 0) put on each weight."""
    lo = np.maximum(np.maximum(0.0 if nonnegative else -np.inf, ratio_bounds[0] * d), weight_bounds[0])
    return lo, np.minimum(ratio_bounds[1] * d, weight_bounds[1])


def _bound_sums(X, used, bound):
    """(sum_i bound_i x_ij over the units with a finite bound, the number of units with x_ij > 0 and an infinite
    bound) per column."""
    return X.T @ np.where(np.isfinite(bound), bound, 0.0), used.T @ np.isinf(bound).astype(float)


def _reach_sums(X, d, **options):
    """One block's share of check_reachable's sums: units without room, the lowest and highest totals (finite
    parts and infinite counts), negative entries and units with x_ij > 0 per column."""
    lo, hi = _weight_box(d, **options)
    used = X > 0
    return (int(np.sum(lo > hi)),) + _bound_sums(X, used, lo) + _bound_sums(X, used, hi) + \
        (has_negative(X).astype(float), np.asarray(used.sum(axis=0), dtype=float).ravel())


def _held_reach_sums(X, d, held, **options):
    """One block's highest totals with the units of target `held` at their lowest weights."""
    lo, hi = _weight_box(d, **options)
    used = X > 0
    return _bound_sums(X, used, np.where(column(used, held), lo, hi))


def calibration_system(frame, margins, totals, constraints, sparse=True):
    """The calibration matrix X (n x k), target names, totals T, and the population size N when a margin gives it.
    Margins become indicator columns straight from the level codes (one nonzero per unit and margin variable);
    with `sparse`, X is a scipy CSR matrix when at most a quarter of it would be nonzero (it then stores exactly
    one entry per unit for every margin variable and every total, zeros included), else a dense array."""
    margins = margins or {}
    coded = {var: margin_codes(frame, var) for var in margins}
    counts = {var: pd.Series(np.bincount(code, minlength=len(present)), index=present)
              for var, (code, present) in coded.items()}
    names, T, N, levels = margin_targets(counts, margins)
    numeric = []
    for col, total in (totals or {}).items():
        numeric.append(numeric_matrix(frame, [col], "totals")[:, 0])
        names.append(col)
        T.append(float(total))
    for name, (coef, total) in (constraints or {}).items():
        coef = np.asarray(coef, dtype=float).ravel()
        if len(coef) != len(frame):
            raise InputError(f"constraint {name!r} has {len(coef)} coefficients for {len(frame)} rows")
        finite(coef, f"constraint {name!r} coefficients")
        numeric.append(coef)
        names.append(str(name))
        T.append(float(total))
    if not names:
        raise InputError("give at least one target: margins=, totals= or constraints=")
    finite(T, "population totals")
    check_target_names(names)
    X = system_matrix(coded, levels, numeric, len(names), sparse)
    return X, names, np.asarray(T), N


def check_target_names(names):
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"targets named more than once: {repeated}")


def margin_codes(frame, var):
    """(level code per unit, the levels in code order) of margin variable `var`, which must have no missing values."""
    if var not in frame.columns:
        raise InputError(f"margin variable {var!r} is not in the data")
    values = frame[var]
    if values.isna().any():
        raise InputError(f"margin variable {var!r} has {int(values.isna().sum())} missing values")
    return pd.factorize(values)


def margin_targets(counts, margins):
    """(target names, totals, population size N, per variable the column of each level) of the margins, given
    the number of units at each level (`counts`: variable -> Series level -> units, over all the data): every
    level in the data needs a total, and a positive total needs units."""
    names, T, levels, N = [], [], {}, None
    for var, targets in margins.items():
        if not isinstance(targets, (dict, pd.Series)) or len(targets) == 0:
            raise InputError(f"margins[{var!r}] must be a non-empty dict level -> population total")
        present = counts[var][counts[var] > 0]
        keyed = {_level_key(k, present.index): (k, float(v)) for k, v in dict(targets).items()}
        missing = [level for level in present.index if level not in keyed]
        if missing:
            raise InputError(f"margin {var!r}: levels {sorted(map(str, missing))} occur in the data but have no "
                             "population total; add them (or merge levels) so every unit is calibrated")
        levels[var] = {}
        for level, (key, total) in keyed.items():
            finite([total], f"population total for {var}={key}")
            if total < 0:
                raise InputError(f"margin {var!r}: level {key!r} has a negative total {total}")
            units = int(present.get(level, 0)) if level in present.index else 0
            if not units:
                if total > 0:
                    raise InputError(f"margin {var!r}: level {key!r} has population total {total:g} but no units "
                                     "in the sample; no weights can reach it (collapse it into a neighbouring level)")
                continue
            if total == 0:
                warn(f"margin {var!r}: level {key!r} has {units} units but a population total of 0, "
                     "so those units get weight 0")
            levels[var][level] = len(names)
            names.append(f"{var}={key}")
            T.append(total)
        N = N if N is not None else sum(v for _, v in keyed.values())
    return names, T, N, levels


def system_matrix(coded, levels, numeric, k, sparse=True):
    """X (n x k) from the margins' level codes (`coded`: variable -> (codes, levels in code order)), each level's
    column (`levels`: variable -> level -> column) and the numeric targets' columns (placed after the margins'):
    a CSR matrix with one entry per unit for every margin variable and numeric target when `sparse` and at most a
    quarter of X would be nonzero, else a dense read-only array."""
    n = len(next(iter(coded.values()))[0]) if coded else len(numeric[0])
    columns = [np.array([levels[var][level] for level in present], dtype=np.int64)[code]
               for var, (code, present) in coded.items()]
    columns += [np.full(n, k - len(numeric) + j) for j in range(len(numeric))]
    if sparse and coded and len(columns) <= 0.25 * k:
        r = len(columns)
        entries, indices = np.ones((n, r)), np.empty((n, r), dtype=np.int32)
        for a, values in enumerate(columns):
            indices[:, a] = values
        for a, values in enumerate(numeric):
            entries[:, len(coded) + a] = values
        X = scipy.sparse.csr_matrix((entries.ravel(), indices.ravel(), np.arange(0, n * r + 1, r)), shape=(n, k))
        X.has_sorted_indices = True               # margins' columns come in order, the numeric ones after them
        return X
    X = np.zeros((n, k))                          # one C-ordered matrix
    for a, values in enumerate(columns[:len(coded)]):
        X[np.arange(n), values] = 1.0
    for j, values in enumerate(numeric):
        X[:, k - len(numeric) + j] = values
    X.flags.writeable = False                     # shared by the terms, the balance table and the backends
    return X


def _level_key(key, present):
    """Match a target's level to the data's values, also across str/number spellings ("1" vs 1)."""
    if key in set(present):
        return key
    by_text = {str(p): p for p in present}
    return by_text.get(str(key), key)


def independent_targets_of(blocks, T, names):
    """Indices of a maximal set of linearly independent targets; a redundant target must agree with the others.
    Works on the k x k Gram matrix G = X' diag(d) X (one pass over the row blocks (X, d)): pivoted Cholesky
    (LAPACK dpstrf) finds the rank, and a dropped target's implied total is T_keep' G_kk^-1 G_k,drop."""
    G = blocks.reduce(_gram)
    k = G.shape[0]
    scale = np.sqrt(np.maximum(np.diag(G), 1e-300))
    _, piv, rank, _ = scipy.linalg.lapack.dpstrf(G / np.outer(scale, scale), tol=1e-12)
    piv = piv[:k] - 1
    keep, drop = np.sort(piv[:rank]), piv[rank:]
    if len(drop):
        implied = T[keep] @ np.linalg.solve(G[np.ix_(keep, keep)], G[np.ix_(keep, drop)])
        for j, value in zip(drop, implied):
            if abs(value - T[j]) > 1e-8 * (1 + abs(T[j])):
                raise InfeasibleError(f"target {names[j]} = {T[j]:g} contradicts the other targets, which imply "
                                      f"{value:g} for it (e.g. two margins with different population sizes)")
    return keep


def _gram(X, d):
    return Rows(X).gram(d)


def total_design(X, names, T, N, d):
    """The balance design of a calibration: totals compared with their targets, SMDs on the base-weighted SDs (none,
    NaN, for a constant column such as a population count of ones: its relative error judges it)."""
    denominators = {key: np.where(sd > 0, sd, np.nan) for key, sd in smd_denominators(X, base_weights=d).items()}
    return BalanceDesign(names=tuple(names), X=X, groups=np.full(len(d), "sample", dtype=object), base_weights=d,
                         targets={"sample": T}, denominators=denominators, std="target",
                         kind="total", population_size=None if N is None else {"sample": N}, checked=True)
