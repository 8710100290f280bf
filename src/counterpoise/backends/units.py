"""A group's units as the dual Newton sees them, wherever they are stored, and their view of a dual point.

The dual of one group (`dual.GroupDual`) reads its units only through sums over them at a dual point y: with
v = A'y one value per unit and w(v) = clip(w^free(v), lo, hi) (the distance's free maximizer in the box),

    phi = v'w - dist(w),  P = dist(w),  A w,  the Hessian A_I diag(dw/dv) A_I' over the units I inside the box,
    and the support function sigma(u) = max { u'w : lo <= w <= hi (, sum w = total) } of the Farkas test.

`Units` holds the units in row blocks (`blocks.Blocks`: the arrays in memory, one block; `blocks.DaskBlocks`: one
block per partition of a Dask collection, persisted on the workers), each block a tuple (rows, distance, lo, hi,
memo): its constraint rows A' (`rows.Rows`, or `rows.Stacked` with a user's rows), the distance of its units
(`Quadratic` or `Ratio`), its box, and a `Memo` of its last products A'y. Every sum above is one pass over the blocks (`reduce`), so the same class serves memory and
a cluster; only the batching differs: a line search evaluates `blocks.batch` trial points per pass (one in memory,
where a pass is cheap; several on a cluster, where a pass is a round trip), and on a cluster the Hessian comes with
the full step's trial point, which is usually accepted. The weights are w(A'y) block by block (`weights`: an array in
memory, a lazy dask array on partitions). sigma with a sum row and finite upper bounds needs the units sorted by u:
exact within one block; over several blocks the bound lo'u + max(total - sum lo, 0) max u, which is at least sigma,
so a ray it certifies is a certificate still.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from .blocks import Blocks
from .rows import Rows


class Quadratic:
    """The chi-square distance sum_i (w_i - c_i)^2 / s_i of a block of units: its free maximizer of v w - (w - c)^2 / s,
    w = c + s v / 2, its value, and dw/dv = s / 2 (the Hessian's weight of a unit inside its bounds). Its base
    weights (the balance table's "before") are the centres c."""

    def __init__(self, c, s):
        self.c, self.s = c, s

    @property
    def base(self):
        return self.c

    def weights(self, v):
        return self.c + self.s * v / 2

    def values(self, w):
        return (w - self.c) ** 2 / self.s

    def value(self, w) -> float:
        return float(np.sum(self.values(w)))

    def curvature(self, v, w):
        return self.s / 2

    def take(self, rows) -> "Quadratic":
        return Quadratic(self.c[rows], self.s[rows])

    def scaled(self, ratio) -> tuple["Quadratic", float]:
        """These units standing for `ratio` times as many (a subsample for its group): centres times `ratio`, and
        the factor that takes their dual point to the group's (1 / ratio: w = ratio (c + s (v / ratio) / 2))."""
        return Quadratic(self.c * ratio, self.s), 1.0 / ratio

    def rebased(self, d) -> "Quadratic":
        """The same distance to other base weights d (centres d, scales in the same ratio to them: linear
        calibration of a replicate's weights)."""
        return Quadratic(d, self.s / self.c * d)

    @staticmethod
    def joined(blocks) -> "Quadratic":
        return Quadratic(np.concatenate([b.c for b in blocks]), np.concatenate([b.s for b in blocks]))


class Ratio:
    """A distance sum_i d_i G(w_i / d_i) on the ratio to base weights d (raking, logit: `terms.distances`) of a
    block of units: w = d F(v), its value and dw/dv = d F'(v)."""

    def __init__(self, distance, d):
        self.distance, self.d = distance, d

    @property
    def base(self):
        return self.d

    def weights(self, v):
        return self.d * self.distance.F(v)

    def values(self, w):
        with np.errstate(over="ignore", invalid="ignore"):
            return self.d * self.distance.G(w / self.d)

    def value(self, w) -> float:
        return float(np.sum(self.values(w)))

    def curvature(self, v, w):
        return self.d * self.distance.dF(v, w / self.d)

    def take(self, rows) -> "Ratio":
        return Ratio(self.distance, self.d[rows])

    def scaled(self, ratio) -> tuple["Ratio", float]:
        """These units standing for `ratio` times as many: base weights times `ratio` (the same g at the same dual
        point, so the factor to the group's dual point is 1)."""
        return Ratio(self.distance, self.d * ratio), 1.0

    def rebased(self, d) -> "Ratio":
        return Ratio(self.distance, d)

    @staticmethod
    def joined(blocks) -> "Ratio":
        return Ratio(blocks[0].distance, np.concatenate([b.d for b in blocks]))


class Units:
    """One group's units in row blocks of (rows, distance, lo, hi, memo), `k` rows other than the sum (see the
    module)."""

    def __init__(self, blocks, k):
        self.blocks, self.k = blocks, k
        size, self.lo_total, infinite_lo = blocks.reduce(block_box)
        self.size, self.lo_finite = int(size), infinite_lo == 0
        self.exact = len(blocks.blocks) == 1          # sigma within the one block is sigma itself

    @classmethod
    def of(cls, distance, lo, hi, rows) -> "Units":
        """Units in memory: one block."""
        return cls(Blocks([(rows, distance, lo, hi, Memo())]), rows.p)

    def evaluate(self, y, step=None, alphas=(0.0,), hessian=False, sigma=None) -> list:
        """The points y + alpha step, one pass over the blocks: a `Point` per alpha (the first with its Hessian when
        `hessian`; each with its support function when `sigma` = (the sum row or None, the total))."""
        sums = self.blocks.reduce(block_points, combine=_combine_points, y=y, step=step, alphas=tuple(alphas),
                                  hessian=hessian, sigma=sigma, exact=self.exact)
        phi, primal, Aw, pieces, H = sums
        return [Point(self, y if step is None else y + alpha * step, phi[j], primal[j], Aw[j], pieces[j],
                      H if hessian and j == 0 else None, sigma) for j, alpha in enumerate(alphas)]

    def at(self, y, sigma=None) -> "Point":
        return self.evaluate(y, hessian=self.blocks.batch > 1, sigma=sigma)[0]

    def hessian_at(self, y):
        """A_I diag(dw/dv) A_I' at y over the units inside their bounds."""
        return self.blocks.reduce(block_hessian, y=y)

    def all_hessian(self):
        """A diag(dw/dv at v = 0) A' over every unit (the metric when every unit is at a bound)."""
        return self.blocks.reduce(block_hessian, y=None)

    def weights(self, y):
        """w(A'y) clipped to [lo, hi], unit by unit in row order (a lazy dask array for blocks on partitions)."""
        return self.blocks.map(block_weights, y=y)

    def upper_bound(self, total):
        """The largest primal objective over {lo <= w <= hi, sum w = total} (total None: no sum constraint)."""
        if not self.lo_finite:
            return np.inf
        bound = self.blocks.reduce(block_bound, total=total, lo_total=self.lo_total)
        return bound if np.isfinite(bound) else np.inf

    def sigma(self, pieces, total):
        """sigma(u) from a point's block pieces (lo'u, max u, sigma within the block): see the module."""
        lo_u, max_u, within = pieces
        if total is None or self.exact:
            return float(within)
        if not self.lo_finite:
            return np.inf
        return float(lo_u + max(total - self.lo_total, 0.0) * max_u)

    def subsample(self, m, seed=0):
        """(units in memory of m units drawn without replacement across the blocks, in proportion to their sizes,
        standing for the n units (`distance.scaled`, lo and hi times n / m), and the factor from their dual point to
        the group's)."""
        sizes = self.blocks.sizes or self.blocks.collect(block_size)
        counts = np.random.default_rng(seed).multivariate_hypergeometric(sizes, m)
        drawn = self.blocks.collect(block_sample, [dict(count=int(count), seed=(seed, p)) if count else None
                                                   for p, count in enumerate(counts)])
        ratio = self.size / m
        distance, factor = type(drawn[0][1]).joined([piece[1] for piece in drawn]).scaled(ratio)
        lo, hi = (np.concatenate([piece[j] for piece in drawn]) for j in (2, 3))
        rows = joined_rows([piece[0] for piece in drawn])
        return Units.of(distance, lo * ratio, hi * ratio, rows), factor


class Memo:
    """A block's last `size` products v = A'y, by y: a line search's direction and trial points, so that the
    Hessian and the weights at the accepted point, and the next line from it, cost no further pass over the rows.
    In memory three; none on a partition (`dual.dual_block`), where the Hessian comes with the trial point and the
    memory of n values per product would add up over the partitions a worker holds."""

    def __init__(self, size=3):
        self.size, self.kept = size, {}

    def dot(self, rows, y):
        v = self.kept.get(y.tobytes())
        return self.keep(y, rows.dot(y)) if v is None else v

    def keep(self, y, v):
        self.kept[y.tobytes()] = v
        while len(self.kept) > self.size:
            del self.kept[next(iter(self.kept))]
        return v


class Point:
    """The units' view of a dual point y: phi = v'w - (the distance at w), the primal objective P, A w, the pieces of
    sigma (when asked for) and the Hessian (on demand when not computed with the point)."""

    def __init__(self, units, y, phi, primal, Aw, pieces, H, sigma):
        self.units, self.y, self.phi, self.P, self._Aw = units, y, float(phi), float(primal), Aw
        self.pieces, self._H, self.spec = pieces, H, sigma

    def Aw(self):
        return self._Aw

    def hessian(self):
        if self._H is None:
            self._H = self.units.hessian_at(self.y)
        return self._H

    def support(self):
        """sigma(A'y less the sum row's multiplier) (see the module)."""
        return self.units.sigma(self.pieces, self.spec[1])

    def line(self, step) -> "Line":
        return Line(self, step)


class Line:
    """The trial points y + alpha step of a line search, evaluated `blocks.batch` halvings per pass (the full step
    alone first, with its Hessian on a cluster)."""

    def __init__(self, point, step):
        self.point, self.step, self.cache = point, step, {}

    def at(self, alpha) -> Point:
        if alpha not in self.cache:
            units = self.point.units
            batch = units.blocks.batch
            alphas = [1.0] if alpha == 1.0 else list(alpha * 0.5 ** np.arange(batch))
            points = units.evaluate(self.point.y, self.step, alphas, hessian=batch > 1, sigma=self.point.spec)
            self.cache.update(zip(alphas, points))
        return self.cache[alpha]


# ---- what one block computes (module functions: they run on the workers) ----

def box_weights(distance, lo, hi, v):
    """w(v), the free maximizer clipped to [lo, hi], and which units are strictly inside their bounds."""
    free = distance.weights(v)
    return np.clip(free, lo, hi), (free > lo) & (free < hi)


def block_weights(rows, distance, lo, hi, memo, y):
    return box_weights(distance, lo, hi, memo.dot(rows, y))[0]


def block_points(rows, distance, lo, hi, memo, y, step, alphas, hessian, sigma, exact):
    """One block's sums at the points y + alpha step: per point phi, P, A w and the pieces of sigma (lo'u, max u,
    sigma within the block, u = v less the sum row's multiplier), and the Hessian at the first point when `hessian`
    (zeros otherwise)."""
    v0 = memo.dot(rows, y)
    dv = None if step is None else memo.dot(rows, step)
    m = len(alphas)
    phi, primal, Aw, pieces = np.zeros(m), np.zeros(m), np.zeros((m, rows.k)), np.zeros((m, 3))
    H = np.zeros((rows.k, rows.k))
    for j, alpha in enumerate(alphas):
        v = v0 if dv is None else memo.keep(y + alpha * step, v0 + alpha * dv)
        w, inside = box_weights(distance, lo, hi, v)
        primal[j] = distance.value(w)
        phi[j] = v @ w - primal[j]
        Aw[j] = rows.tdot(w)
        if sigma is not None:
            sum_row, total = sigma
            shift = 0.0 if sum_row is None else y[sum_row] + (0.0 if dv is None else alpha * step[sum_row])
            pieces[j] = _support_pieces(lo, hi, v - shift, total, exact)
        if hessian and j == 0:
            H = _inside_gram(rows, distance, v, w, inside)
    return phi, primal, Aw, pieces, H


def _support_pieces(lo, hi, u, total, exact):
    """(lo'u, max u, sigma(u) over this block: exact without a sum row or when `exact`, else 0)."""
    with np.errstate(invalid="ignore"):
        if total is None:
            return 0.0, 0.0, float(np.sum(np.where(u > 0, hi * u, np.where(u < 0, lo * u, 0.0))))
        lo_u = float(lo @ u)
    largest = float(np.max(u, initial=-np.inf))
    if not exact:
        return lo_u, largest, 0.0
    if not np.all(np.isfinite(lo)):
        return lo_u, largest, np.inf
    remaining = total - lo.sum()
    if np.all(np.isinf(hi)):
        return lo_u, largest, lo_u + remaining * largest
    order = np.argsort(-u)
    room = (hi - lo)[order]
    fill = np.clip(remaining - (np.cumsum(room) - room), 0.0, room)
    return lo_u, largest, lo_u + float(fill @ u[order])


def _combine_points(a, b):
    """Two blocks' `block_points` combined: sums, and the largest u (pieces' second column)."""
    pieces = a[3] + b[3]
    pieces[:, 1] = np.maximum(a[3][:, 1], b[3][:, 1])
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], pieces, a[4] + b[4]


def block_hessian(rows, distance, lo, hi, memo, y):
    """A_I diag(dw/dv) A_I' of one block at y (None: every unit, at v = 0)."""
    if y is None:
        v = np.zeros(len(lo))
        return rows.gram(distance.curvature(v, distance.weights(v)))
    v = memo.dot(rows, y)
    return _inside_gram(rows, distance, v, *box_weights(distance, lo, hi, v))


def _inside_gram(rows, distance, v, w, inside):
    return rows.gram(np.where(inside, distance.curvature(v, w), 0.0))


def block_box(rows, distance, lo, hi, memo):
    """(units, sum of the finite lower bounds, units with an infinite lower bound)."""
    return float(len(lo)), float(np.sum(lo[np.isfinite(lo)])), float(np.sum(~np.isfinite(lo)))


def block_size(rows, distance, lo, hi, memo):
    return len(lo)


def block_bound(rows, distance, lo, hi, memo, total, lo_total):
    """The largest distance over the block's box, sum max(G(lo), G(hi')), hi' = min(hi, total - (sum lo - lo)) when
    normalized (total not None)."""
    if total is not None:
        hi = np.minimum(hi, total - (lo_total - lo))
    return float(np.sum(np.maximum(distance.values(lo), distance.values(hi))))


def block_sample(rows, distance, lo, hi, memo, count, seed):
    """`count` of a block's units drawn without replacement (default_rng(seed)): (its rows, distance, lo, hi)."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(lo), count, replace=False))
    return rows.subset(chosen), distance.take(chosen), lo[chosen], hi[chosen]


def joined_rows(pieces):
    """Row blocks of the same columns as one (`rows.Rows`): a subsample gathered from several blocks."""
    if len(pieces) == 1:
        return pieces[0]
    first = pieces[0]
    B = [piece.B for piece in pieces]
    B = scipy.sparse.vstack(B, format="csr") if scipy.sparse.issparse(B[0]) else np.vstack(B)
    factor = None if first.row_factor is None else np.concatenate([piece.row_factor for piece in pieces])
    return Rows(B, column_scale=first.column_scale, row_factor=factor, constant=first.constant, columns=first.columns)
