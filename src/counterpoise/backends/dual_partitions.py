"""The dual Newton of `dual.py` on units held on a Dask collection's partitions (SBW, and calibration or entropy
balancing with tolerances, on a dask DataFrame).

`dual.GroupDual` reads its units through `Units` / `Point` / `Line`; here they are partitions, each a block
(rows, distance, base, lo, hi) persisted on a worker (`blocks.DaskBlocks`): the rows A', the distance of its units
(`dual.Quadratic` or `dual.Ratio`), their base weights (c or d, for the balance table) and the box on w. A point y is
one pass over the partitions that returns what the loop reads: phi = v'w - (the distance at w) and the primal
objective, A w (k + 1 numbers), the support-function sums of the Farkas test and, when asked, the Hessian
A_I diag(dw/dv) A_I' (k + 1 squared). A line
search evaluates its trial points y + alpha step in batches, one pass each: the full step alone first (with the
Hessian there, for the next step), then `batch` halvings at a time. A cold start solves the same dual on a seeded
subsample of the units gathered to the client (`dual.SUBSAMPLE` of them), as in memory. The weights stay on the
workers: w = w(A'y) clipped to [lo, hi] per partition (`dual_weights`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from .dual import Point, Units
from .rows import Rows


def dual_weights(rows, distance, base, lo, hi, lam=None) -> np.ndarray:
    """w(A'y) clipped to [lo, hi]: one block's weights at the dual point y = `lam`."""
    return Units(distance, lo, hi, rows).at(lam).weights()


def dual_objective(rows, distance, base, lo, hi, w) -> float:
    """The distance at w over one block."""
    return distance.value(w)


def _point_sums(rows, distance, base, lo, hi, y, step, alphas, hessian, normalized):
    """One block's sums at the points y + alpha step: per point (phi, primal, A w, sum lo u, max u, the support
    without a sum row), u = A'(y + alpha step) less the sum row's multiplier; the Hessian at the first point when
    `hessian`. Each is the block's `dual.Point` at that v."""
    units = Units(distance, lo, hi, rows)
    v0 = rows.dot(y)
    dv = rows.dot(step) if step is not None else np.zeros_like(v0)
    m = len(alphas)
    phi, primal, Aw = np.zeros(m), np.zeros(m), np.zeros((m, rows.k))
    lo_u, max_u, free_support = np.zeros(m), np.full(m, -np.inf), np.zeros(m)
    H = np.zeros((rows.k, rows.k))
    for j, alpha in enumerate(alphas):
        point = Point(units, v0 + alpha * dv)
        primal[j], phi[j], Aw[j] = point.P, point.phi, point.Aw()
        u = point.v - ((y[-1] + alpha * (0.0 if step is None else step[-1])) if normalized else 0.0)
        with np.errstate(invalid="ignore"):
            lo_u[j] = lo @ u
            free_support[j] = units.support(u, None)
        max_u[j] = np.max(u, initial=-np.inf)
        if hessian and j == 0:
            H = point.hessian()
    return phi, primal, Aw, lo_u, max_u, free_support, H


def _combine_points(a, b):
    """Two blocks' `_point_sums` combined: sums, and the largest u."""
    return tuple(np.maximum(x, y) if j == 4 else x + y for j, (x, y) in enumerate(zip(a, b)))


def _box_sums(rows, distance, base, lo, hi):
    """(sum lo, units with an infinite lower bound, units with a finite upper bound) of one block."""
    return float(np.sum(lo[np.isfinite(lo)])), float(np.sum(~np.isfinite(lo))), float(np.sum(np.isfinite(hi)))


def _bound_sum(rows, distance, base, lo, hi, total, lo_total):
    """The largest distance over the block's box, sum max(G(lo), G(hi')), hi' = min(hi, total - (sum lo - lo)) when
    normalized."""
    if total is not None:
        hi = np.minimum(hi, total - (lo_total - lo))
    return float(np.sum(np.maximum(distance.values(lo), distance.values(hi))))


def _all_gram(rows, distance, base, lo, hi):
    return Units(distance, lo, hi, rows).all_hessian()


def _sample(rows, distance, base, lo, hi, count, seed):
    """`count` of a block's units drawn without replacement (default_rng(seed)): (its rows, distance, lo, hi)."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(lo), count, replace=False))
    return rows.subset(chosen), distance.take(chosen), lo[chosen], hi[chosen]


class PartitionedUnits:
    """One group's units on the partitions of a Dask collection: `blocks` (`blocks.DaskBlocks`) of
    (rows, distance, base, lo, hi), `k` balance columns, `normalized` when the group has a sum row."""

    def __init__(self, blocks, k, normalized):
        self.blocks, self.k, self.normalized = blocks, k, normalized
        self.size = sum(blocks.sizes)
        self.lo_total, infinite_lo, finite_hi = blocks.reduce(_box_sums)
        self.lo_finite, self.hi_infinite = infinite_lo == 0, finite_hi == 0

    def evaluate(self, y, step=None, alphas=(0.0,), hessian=False):
        """The points y + alpha step, one pass: a `PartitionedPoint` per alpha (the first with its Hessian when
        `hessian`)."""
        sums = self.blocks.reduce(_point_sums, combine=_combine_points, y=y, step=step, alphas=tuple(alphas),
                                  hessian=hessian, normalized=self.normalized)
        phi, primal, Aw, lo_u, max_u, free_support, H = sums
        points = []
        for j, alpha in enumerate(alphas):
            at = y if step is None else y + alpha * step
            points.append(PartitionedPoint(self, at, phi[j], primal[j], Aw[j], lo_u[j], max_u[j], free_support[j],
                                           H if hessian and j == 0 else None))
        return points

    def at(self, y) -> "PartitionedPoint":
        return self.evaluate(y, hessian=True)[0]

    def all_hessian(self):
        return self.blocks.reduce(_all_gram)

    def upper_bound(self, total):
        if not self.lo_finite:
            return np.inf
        bound = self.blocks.reduce(_bound_sum, total=total, lo_total=self.lo_total)
        return bound if np.isfinite(bound) else np.inf

    def subsample(self, m, seed=0):
        """(`dual.Units` in memory of m units drawn across the partitions, in proportion to their sizes, standing for
        the n units (`distance.scaled`, lo and hi times n / m), and the factor from their dual point to the
        group's)."""
        import dask

        sizes = np.asarray(self.blocks.sizes)
        counts = np.random.default_rng(seed).multivariate_hypergeometric(sizes, m)
        drawn = dask.compute(*[dask.delayed(_apply_sample)(block, int(count), (seed, p))
                               for p, (block, count) in enumerate(zip(self.blocks.blocks, counts)) if count])
        rows = drawn[0][0]
        pieces = [piece[0].B for piece in drawn]
        B = scipy.sparse.vstack(pieces, format="csr") if scipy.sparse.issparse(pieces[0]) else np.vstack(pieces)
        lo, hi = (np.concatenate([piece[j] for piece in drawn]) for j in (2, 3))
        ratio = self.size / m
        distance, factor = type(drawn[0][1]).joined([piece[1] for piece in drawn]).scaled(ratio)
        joined = Rows(B, column_scale=rows.column_scale, constant=rows.constant, columns=rows.columns)
        return Units(distance, lo * ratio, hi * ratio, joined), factor


def _apply_sample(block, count, seed):
    return _sample(*block, count=count, seed=seed)


class PartitionedPoint:
    """A dual point's sums over the partitions (see `dual.Point` for what the loop reads)."""

    def __init__(self, units, y, phi, primal, Aw, lo_u, max_u, free_support, H):
        self.units, self.y, self.phi, self.P, self._Aw = units, y, float(phi), float(primal), Aw
        self.lo_u, self.max_u, self.free_support, self._H = lo_u, max_u, free_support, H

    def Aw(self):
        return self._Aw

    def hessian(self):
        if self._H is None:
            self._H = self.units.evaluate(self.y, hessian=True)[0]._H
        return self._H

    def support(self, shift, total):
        """sigma(u) (see `dual.Units.support`) from the partitions' sums; +inf (no certificate) where it needs the
        units sorted (finite upper bounds with a sum row)."""
        if total is None:
            return float(self.free_support)
        if not self.units.lo_finite or not self.units.hi_infinite:
            return np.inf
        return float(self.lo_u + (total - self.units.lo_total) * self.max_u)

    def line(self, step) -> "PartitionedLine":
        return PartitionedLine(self, step)

    def weights(self):
        return None          # on the workers: `dual_weights` at the final y


class PartitionedLine:
    """The trial points y + alpha step of a line search, evaluated in batches: the full step alone (with its
    Hessian), then `blocks.batch` halvings per pass."""

    def __init__(self, point, step):
        self.point, self.step, self.cache = point, step, {}

    def at(self, alpha) -> PartitionedPoint:
        if alpha not in self.cache:
            units = self.point.units
            alphas = [1.0] if alpha == 1.0 else list(alpha * 0.5 ** np.arange(units.blocks.batch))
            points = units.evaluate(self.point.y, self.step, alphas, hessian=True)
            self.cache.update(zip(alphas, points))
        return self.cache[alpha]
