"""boot_balnet: choose lambda per arm by the imbalance of the full-sample weights on half-subsamples (balnet's
cv.boot.balnet, after Wang & Zubizarreta 2020).

The full data are fitted once. For each arm and each lambda of its path, with w(lam) the arm's balancing weights
on the full sample, and for each of `samples` subsamples S_b of half the rows (drawn without replacement, as
balnet's sample.int(n, n %/% 2)):

    I_b(lam) = mean_j | (sum_{i in S_b} w_i(lam) x_ij / sum_{i in S_b} w_i(lam) - m_j) / s_j |,

m and s the arm's target mean and SD (the fit's own standardization; for the ATE the sample-weighted full-sample
mean and SD, as balnet's). lambda_min minimizes the mean of I_b over the subsamples. Unlike balnet, which clips
held-out propensities at 0.001, nothing is clipped: the weights are the full fit's own. The subsamples are drawn
`chunk` at a time from numpy's default_rng([seed, chunk number]), the same for every lambda and arm.
"""

from __future__ import annotations

import numpy as np

from ..diagnostics import resampled_imbalance
from ..errors import InputError
from ..progress import bar
from ..validation import as_frame, integer, validated
from . import loss as cal
from .cv import BalnetCV
from .fit import balnet

CHUNK = 50


@validated(samples=integer(2), seed=integer(0))
def boot_balnet(data, treatment=None, covariates=None, samples=500, seed=0, sample_weights=None, progress=None,
                **options) -> BalnetCV:
    """`balnet(data, treatment, covariates, sample_weights=..., **options)` with lambda chosen per arm by the
    subsampled imbalance of its weights (module docstring). Returns a BalnetCV (coef, predict and weights at
    lambda_min) whose losses are (subsamples x lambdas)."""
    frame = as_frame(data)
    fit = balnet(frame, treatment, covariates, sample_weights=sample_weights, **options)
    n = len(frame)
    losses = {}
    for name, arm in fit.arms.items():
        Z = (fit.X - arm.target_mean) / np.where(arm.target_sd > 0, arm.target_sd, 1.0)
        weights = np.column_stack([cal.balancing_weights(arm.link(fit.X, lam), arm.y, fit.sample_weights,
                                                         att=arm.att) for lam in arm.lambdas])
        loss = np.empty((samples, weights.shape[1]))
        for k, start in enumerate(bar(range(0, samples, CHUNK), f"boot_balnet {name}", progress)):
            size = min(CHUNK, samples - start)
            rng = np.random.default_rng([int(seed), k])
            S = np.zeros((size, n))
            for row in S:
                row[rng.choice(n, n // 2, replace=False)] = 1.0
            loss[start:start + size] = resampled_imbalance(S, weights.T, Z)
        losses[name] = loss
    if any(np.isnan(loss).any() for loss in losses.values()):
        raise InputError("a half-subsample held none of an arm's units; the arm is too small for boot_balnet")
    return BalnetCV(fit, losses, None, measure="subsampled imbalance")
