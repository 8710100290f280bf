"""Tan's calibration loss for one arm (Tan 2020, Biometrika 107:137; R's balnet, RCAL).

With y_i = 1 for the units of the arm being modelled, w the sample weights normalized to sum to 1 over all units,
eta = a + x~'b the link of P(arm | x) and c the target scale (1, or n / n_treated for the ATT):

    loss(eta)       = c sum_i w_i (y_i exp(-eta_i) + (1 - y_i) eta_i)
    -d loss/d eta_i = c w_i (y_i exp(-eta_i) - (1 - y_i))
    d2 loss/d eta_i2 = c w_i y_i exp(-eta_i)        (zero off the arm: the loss is convex, not strictly)

At an optimum with an intercept, x~' (-grad) is the vector of standardized mean differences of the arm weighted
by 1 / P(arm | x) against the target, so a lasso penalty lam bounds every |SMD| by lam.
"""

from __future__ import annotations

import numpy as np


def arm_exp(eta, y):
    """y_i exp(-eta_i), evaluated on the arm only (off the arm exp(-eta) may overflow and is not needed)."""
    return np.exp(-eta, where=y > 0, out=np.zeros(np.shape(eta)))


def loss(eta, y, w, scale=1.0) -> float:
    """scale * sum_i w_i (y_i exp(-eta_i) + (1 - y_i) eta_i)."""
    return float(scale * (w @ arm_exp(eta, y) + (w * (1 - y)) @ eta))


def null_loss(y, w, scale=1.0) -> float:
    """The loss of the intercept-only fit: exp(-a) = (1 - p) / p with p = sum_i w_i y_i, so
    loss = scale (1 - p) (1 + log(p / (1 - p))); negative when p < 1 / (1 + e) ~ 0.27."""
    p = float(w @ y)
    return scale * (1 - p) * (1 + np.log(p / (1 - p)))


def balancing_weights(eta, y, sample_weights, att=False):
    """The inverse-probability weights of the arm's units, times their sample weights (0 off the arm):
    1 / P(arm | x) = 1 + exp(-eta), or for the ATT's control arm the odds exp(-eta) = e / (1 - e)."""
    odds = arm_exp(eta, y)
    return sample_weights * (odds if att else np.where(y > 0, 1.0 + odds, 0.0))
