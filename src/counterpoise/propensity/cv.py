"""cv_balnet: choose lambda per arm by cross-validated balance loss (R's cv.balnet).

Each fold refits balnet on the other folds with the same arguments (so it re-standardizes and draws its own
lambda path), predicts the link on the held-out rows at the full-data lambdas (interpolated, clamped to the fold's
path), and scores the calibration loss there without target scaling:

    CV_k(lam) = sum_{i in fold k} s_i (y_i exp(-eta_i) + (1 - y_i) eta_i) / sum_{i in fold k} s_i.

lambda_min is the lambda with the smallest mean over folds, per arm (no one-SE rule, as in balnet).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from ..progress import bar
from ..validation import as_frame
from . import loss as cal
from .fit import balnet
from .model import BalnetFit


class BalnetCV:
    """Cross-validation of a balnet fit. `fit` is the full-data fit; `losses[arm]` is (folds x lambdas), or for
    `boot_balnet` (subsamples x lambdas), named by `measure`; `cv_table(arm)` has the mean and standard error per
    lambda; `lambda_min` is a dict arm -> lambda. coef, predict and weights default to lambda_min."""

    def __init__(self, fit: BalnetFit, losses: dict, fold_id: np.ndarray | None,
                 measure="held-out balance loss"):
        self.fit = fit
        self.losses = losses
        self.fold_id = fold_id
        self.measure = measure
        self.index_min = {arm: int(np.argmin(loss.mean(axis=0))) for arm, loss in losses.items()}
        self.lambda_min = {arm: float(fit.arms[arm].lambdas[i]) for arm, i in self.index_min.items()}

    def cv_table(self, arm=None) -> pd.DataFrame:
        """Per lambda of the full-data path: mean CV loss over folds and its standard error (SD / sqrt(folds))."""
        arm = self.fit._arm(arm).name
        loss = self.losses[arm]
        return pd.DataFrame({"lambda": self.fit.arms[arm].lambdas, "cv_loss": loss.mean(axis=0),
                             "std_error": loss.std(axis=0, ddof=1) / np.sqrt(loss.shape[0])})

    def __repr__(self):
        rows = self.losses[next(iter(self.losses))].shape[0]
        lines = [f"cv_balnet ({self.fit.target}, {self.measure} over {rows} "
                 f"{'folds' if self.fold_id is not None else 'subsamples'})"]
        for arm, i in self.index_min.items():
            row = self.fit.arms[arm].table.iloc[i]
            lines.append(f"{arm.capitalize()}: lambda_min = {row['lambda']:.4g} (index {i + 1}), nonzero "
                         f"{int(row['nonzero'])}, mean |SMD| {row['mean_abs_smd']:.4g}, "
                         f"{self.measure} {self.losses[arm].mean(axis=0)[i]:.6g}")
        return "\n".join(lines)

    def coef(self, lam=None, arm=None):
        return self.fit.coef(self.lambda_min if lam is None else lam, arm)

    def predict(self, newdata=None, lam=None, type="response"):
        return self.fit.predict(newdata, self.lambda_min if lam is None else lam, type)

    def weights(self, lam=None):
        return self.fit.weights(self.lambda_min if lam is None else lam)

    def plot(self, axes=None):
        """The CV loss (mean +- one standard error) against lambda per arm, lambda_min marked."""
        from ..plots import balnet_cv_plot

        return balnet_cv_plot(self, axes=axes)


def cv_balnet(data, treatment=None, covariates=None, n_folds=10, fold_id=None, seed=0, sample_weights=None,
              progress=None, **options) -> BalnetCV:
    """Cross-validate `balnet(data, treatment, covariates, sample_weights=..., **options)` over its lambda path by
    held-out balance loss (module docstring). `fold_id`: one fold label per row; otherwise rows are dealt into
    max(n_folds, 3) folds at random with numpy's default_rng(seed). `progress`: a progress bar over the folds
    (None: when stderr is a terminal)."""
    frame = as_frame(data)
    fit = balnet(frame, treatment, covariates, sample_weights=sample_weights, **options)
    folds = _folds(len(frame), n_folds, fold_id, seed)
    sw, call = fit.sample_weights, fit.call
    losses = {arm: np.empty((len(np.unique(folds)), len(fit.arms[arm].lambdas))) for arm in fit.arms}
    for k, label in enumerate(bar(np.unique(folds), "cv_balnet folds", progress)):
        train, test = folds != label, folds == label
        # The full fit's call on the training rows, with its covariates (constant columns dropped) and its sample
        # weights on those rows. Not call.on: its guard against per-row arguments would also refuse a path of n
        # lambdas or n penalty factors, and the one per-row argument, sample_weights, is replaced here.
        changes = dict(covariates=fit.names, sample_weights=sw[train])
        fold_fit = call.builder(frame[train], **{**call.arguments, **changes})
        columns = [fit.names.index(name) for name in fold_fit.names]   # a column constant in the fold is dropped
        X_test = fit.X[test][:, columns]
        for arm, full in fit.arms.items():
            model, y, s = fold_fit.arms[arm], full.y[test], sw[test]
            for j, lam in enumerate(full.lambdas):
                eta = model.link(X_test, lam)
                losses[arm][k, j] = cal.loss(eta, y, s / s.sum())
    return BalnetCV(fit, losses, folds)


def _folds(n, n_folds, fold_id, seed):
    if fold_id is not None:
        folds = np.asarray(fold_id).ravel()
        if len(folds) != n:
            raise InputError(f"fold_id has {len(folds)} labels but the data has {n} rows")
        if len(np.unique(folds)) < 2:
            raise InputError("fold_id needs at least two folds")
        return folds
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise InputError(f"n_folds must be an integer >= 2 (2 is raised to 3, as in balnet), got {n_folds!r}")
    n_folds = max(int(n_folds), 3)
    if n_folds > n:
        raise InputError(f"n_folds = {n_folds} is more than the {n} rows")
    return np.random.default_rng(seed).permutation(np.resize(np.arange(n_folds), n))
