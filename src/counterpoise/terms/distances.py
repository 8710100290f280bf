"""Distances from base weights: the objectives of balancing and calibration.

Each distance is sum_i d_i G_i(w_i / d_i) for base weights d (its `base`) and owns, on the ratio g = w / d:
G(g), F = (G')^-1 and F'(u). The cvxpy form and `value` write the distance;
the dual Newton (`backends/dual.py`, `backends/calibration.py`) reads F and F' from the same term, because the
calibration weights are w_i = d_i F(x_i' lam) (Deville & Sarndal 1992):

    ChiSquare  G(g) = a (g - 1)^2, a = d / s             (SBW's dispersion)
    Linear     the ChiSquare with s = 2d: G = (g-1)^2 / 2, F(u) = 1 + u   (linear / GREG calibration)
    Entropy    G(g) = g log g - g + 1                      F(u) = exp(u)        (raking; entropy balancing)
    Logit      G(g) = [(g-L) log((g-L)/(1-L)) + (U-g) log((U-g)/(U-1))] / A,  A = (U-L) / ((1-L)(U-1)),
               F(u) = (L (U-1) + U (1-L) e^{Au}) / (U - 1 + (1-L) e^{Au})
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from .base import Term


class ChiSquare(Term):
    """Chi-square dispersion: sum_i (w_i - c_i + tau h_i)^2 / s_i (tau = 0 unless a `tau` is given).

    SBW (Zubizarreta 2015) uses c = d / sum(d), s = d / mean(d) within each arm, which is the
    variance of the weights sum (w_i - 1/n)^2 for unit base weights d. Linear (GREG) calibration
    uses c = d, s = 2 d, the Deville-Sarndal distance sum d_i (g_i - 1)^2 / 2 with g = w / d.
    `tau` (a Parameter "tau") with a fixed `shift` h moves the center to c - tau h; since
    sum (w - c + tau h)^2 / s = sum (w - c)^2 / s + 2 tau sum h w / s + const, this adds a linear penalty: with
    s = 2 d sum(d) and h = mean(d) it is tau mean(w / d) (exact-target sparse calibration).
    As a calibration distance (tau = 0) the base weights are d = c and G(g) = (c / s)(g - 1)^2 per unit.
    """

    name = "chi_square"

    def __init__(self, center, scale, tau=None, shift=None, name=None):
        self.base_center = np.asarray(center, dtype=float)
        self.scale = np.asarray(scale, dtype=float)
        self.name = name or self.name
        self.tau = None if tau is None else cp.Parameter(nonneg=True, name=f"{self.name}.tau", value=float(tau))
        self.shift = None if tau is None else np.broadcast_to(np.asarray(shift, dtype=float), self.base_center.shape)

    @property
    def center(self):
        return self.base_center if self.tau is None else self.base_center - self.tau.value * self.shift

    @property
    def base(self):
        return self.base_center

    def parameters(self):
        return {} if self.tau is None else {"tau": self.tau}

    def objective(self, w):
        center = self.base_center if self.tau is None else self.base_center - self.tau * self.shift
        return cp.sum_squares(cp.multiply(w - center, 1.0 / np.sqrt(self.scale)))

    def value(self, w):
        return float(np.sum((w - self.center) ** 2 / self.scale))

    def objective_scale(self):
        return float(np.sum(self.base_center ** 2 / self.scale))

    def G(self, g):
        return self.base_center / self.scale * (g - 1.0) ** 2

    def F(self, u):
        return 1.0 + u * self.scale / (2 * self.base_center)

    def dF(self, u, g):
        """F'(u), given g = F(u)."""
        return np.broadcast_to(self.scale / (2 * self.base_center), np.shape(u))


class Linear(ChiSquare):
    """The Deville-Sarndal linear (GREG) distance to base weights d: sum_i d_i (g_i - 1)^2 / 2, g = w / d, the
    chi-square with centres d and scales 2 d (survey's calfun="linear"). Its own class so that a backend recognizes
    linear calibration by what it is."""

    name = "linear"

    def __init__(self, base, name=None):
        super().__init__(base, 2 * np.asarray(base, dtype=float), name=name)


class Entropy(Term):
    """Entropy (KL) distance to base weights: sum_i v_i log(v_i / q_i) - v_i + q_i with v = w - o.

    With sum w = sum q = 1 and no offset o this is KL(w || q), entropy balancing (Hainmueller 2012); with q = d it
    is the raking distance sum d_i G(w_i / d_i), G(g) = g log g - g + 1 (Deville-Sarndal). An offset o keeps every
    w_i >= o_i: balnet's dual, where 1/P(arm | x) >= 1 puts w_i = o_i + q_i exp(-eta_i) with o = q.
    """

    name = "entropy"

    def __init__(self, base, offset=None, name=None):
        self.base = np.asarray(base, dtype=float)
        self.offset = None if offset is None else np.asarray(offset, dtype=float)
        self.name = name or self.name

    def _excess(self, w):
        return w if self.offset is None else w - self.offset

    def objective(self, w):
        return cp.sum(cp.kl_div(self._excess(w), self.base))

    def value(self, w):
        return float(self.base @ self.G(np.maximum(self._excess(w), 0.0) / self.base))

    def objective_scale(self):
        return float(np.sum(self.base))

    def violation(self, w):
        """Weights below the offset (0 by default) are outside the entropy's domain; in units of the mean base
        weight."""
        return max(float(-np.min(self._excess(w))), 0.0) / float(np.mean(self.base))

    @staticmethod
    def G(g):
        return np.where(g > 0, g * np.log(np.where(g > 0, g, 1.0)) - g + 1.0, 1.0)

    @staticmethod
    def F(u):
        return np.exp(np.minimum(u, 700.0))

    @staticmethod
    def dF(u, g):
        """F'(u), given g = F(u)."""
        return g


class Logit(Term):
    """Deville-Sarndal logit distance with ratio bounds L < g = w/d < U: sum_i d_i G(g_i) (module docstring).

    Its calibration weights are survey::calibrate's calfun="logit". The bounds are part of the distance's domain,
    so they are fixed when the term is built (not Parameters).
    """

    name = "logit"

    def __init__(self, base, lower, upper, name=None):
        if not (0 <= lower < 1 < upper < np.inf):
            raise ValueError("logit distance needs ratio bounds 0 <= L < 1 < U < inf")
        self.base = np.asarray(base, dtype=float)
        self.lower, self.upper = float(lower), float(upper)
        self.A = (upper - lower) / ((1 - lower) * (upper - 1))
        self.name = name or self.name

    def objective(self, w):
        d, L, U = self.base, self.lower, self.upper
        return (cp.sum(cp.rel_entr(w - L * d, (1 - L) * d)) + cp.sum(cp.rel_entr(U * d - w, (U - 1) * d))) / self.A

    def value(self, w):
        return float(self.base @ self.G(np.clip(w / self.base, self.lower, self.upper)))

    def objective_scale(self):
        return float(np.sum(self.base))

    def violation(self, w):
        """How far g = w/d leaves [L, U] (the distance's domain), in units of g."""
        g = w / self.base
        return max(float(np.max(self.lower - g)), float(np.max(g - self.upper)), 0.0)

    def G(self, g):
        """G(g) for L <= g <= U."""
        def xlogx_over(x, y):
            return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0) / y), 0.0)

        L, U = self.lower, self.upper
        return (xlogx_over(g - L, 1 - L) + xlogx_over(U - g, U - 1)) / self.A

    def F(self, u):
        L, U = self.lower, self.upper
        e = np.exp(np.clip(self.A * u, -700.0, 700.0))
        return (L * (U - 1) + U * (1 - L) * e) / (U - 1 + (1 - L) * e)

    def dF(self, u, g):
        """F'(u), given g = F(u)."""
        return self.A * (g - self.lower) * (self.upper - g) / (self.upper - self.lower)
