"""Peer benchmark: microplex-style HardConcrete (L0) sparse calibration.

Runs PolicyEngine's ``l0-python`` (``l0.calibration.SparseCalibrationWeights``:
log-weights times HardConcrete L0 gates, trained by Adam) exactly the way
microplex's ``HardConcreteCalibrator.fit`` drives it, on microplex's synthetic
5,000-record benchmark, over a grid of ``lambda_l0`` x seeds, and writes one
CSV row per fit:

    python hardconcrete.py --lambdas 1e-7,1e-6,1e-5,1e-4,1e-3,1e-2 \
        --seeds 0,1,2 --epochs 2000 --out OUT.csv

Problem. Train targets: the 5 ``age_group`` counts and the continuous total
``sum_i w_i * weight_i``; held-out target: the ``is_male`` counts.

Method (as microplex): A has one indicator row per margin category, then the
``weight`` column as a row; rows and targets are divided by |b| (every target
becomes 1); init weights w0 = df["weight"] rescaled by
``mean(b_norm / (A_norm @ w0))`` over rows with positive achieved values
(so w ~ 1, on the count scale); ``SparseCalibrationWeights(n, init_weights=w0,
init_keep_prob=0.99)`` (other constructor arguments at l0's defaults: beta=2/3,
gamma=-0.1, zeta=1.1, log_alpha_jitter_sd=0.01, no log-weight jitter);
``fit(lambda_l0, lambda_l2=0.0, lr=0.1, epochs, loss_type="relative")`` where
l0's relative loss is sum_k ((y_k - yhat_k) / (y_k + 1))^2 on stochastic gates;
weights read with ``get_weights(deterministic=True)``. One torch thread
(``torch.set_num_threads(1)``). Seeding: ``torch.manual_seed(seed)`` right
before the model is built; it drives both the log_alpha init jitter and the
per-epoch gate noise (l0's ``seed=`` argument would seed only the init jitter;
the gate samples always come from torch's global RNG).

Columns. records = #(w > 1e-9); train_error / test_error = mean over the
age / sex categories of |sum_{i in cat} w_i - target| / target (the microplex
notebook's metric, margins only); max_train_rel_error = max relative error over
all 6 train targets (incl. the continuous one); fit_seconds = perf_counter
around ``model.fit`` only; total_seconds = the whole fit incl. building A,
scaling and reading the weights (data generation excluded). Before the grid,
one untimed warm-up fit (``--warmup-epochs``, default 50) absorbs torch's
first-call overhead (~1.5 s here), which would otherwise land on the first row.
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings

import numpy as np
import pandas as pd
import torch
from scipy import sparse as sp
from l0.calibration import SparseCalibrationWeights

warnings.filterwarnings("ignore", message="Sparse invariant checks")  # torch noise from l0

LR, INIT_KEEP_PROB, LAMBDA_L2, LOSS_TYPE, THREADS = 0.1, 0.99, 0.0, "relative", 1


def make_data(N=5_000):
    """microplex's synthetic benchmark data and targets (legacy RandomState) for N records."""
    rng = np.random.RandomState(42)
    df = pd.DataFrame({
        "age_group": rng.choice(["0-17", "18-34", "35-54", "55-64", "65+"], N,
                                p=[0.22, 0.22, 0.26, 0.13, 0.17]),
        "is_male": rng.choice([True, False], N, p=[0.49, 0.51]),
        "weight": rng.lognormal(8.0, 0.5, N),
    })
    rng2 = np.random.RandomState(123)
    train_marginal = {"age_group": {cat: round(count * rng2.uniform(0.7, 1.3))
                                    for cat, count in df["age_group"].value_counts().items()}}
    train_continuous = {"weight": round(df["weight"].sum() * rng2.uniform(0.9, 1.1))}
    test_marginal = {"is_male": {cat: round(count * rng2.uniform(0.8, 1.2))
                                 for cat, count in df["is_male"].value_counts().items()}}
    return df, train_marginal, train_continuous, test_marginal


def build_constraints(df, marginal, continuous):
    rows, b = [], []
    for var, targets in marginal.items():
        for cat, target in targets.items():
            rows.append((df[var] == cat).to_numpy(dtype=float))
            b.append(target)
    for var, target in continuous.items():
        rows.append(df[var].to_numpy(dtype=float))
        b.append(target)
    return np.vstack(rows), np.array(b, dtype=float)


def fit_hardconcrete(df, marginal, continuous, lambda_l0, epochs, seed):
    """microplex HardConcreteCalibrator.fit; returns (weights, fit_seconds)."""
    A, b = build_constraints(df, marginal, continuous)
    scales = np.abs(b)
    scales[scales < 1e-10] = 1.0
    b_norm, A_norm = b / scales, A / scales[:, None]
    A_sparse = sp.csr_matrix(A_norm)
    w0 = df["weight"].to_numpy(dtype=float)
    achieved = A_norm @ w0
    positive = achieved > 1e-10
    if positive.any():
        w0 = w0 * np.mean(b_norm[positive] / achieved[positive])
    torch.manual_seed(seed)
    model = SparseCalibrationWeights(n_features=len(df), init_keep_prob=INIT_KEEP_PROB,
                                     init_weights=w0, device="cpu")
    t0 = time.perf_counter()
    model.fit(M=A_sparse, y=b_norm, lambda_l0=lambda_l0, lambda_l2=LAMBDA_L2, lr=LR,
              epochs=epochs, loss_type=LOSS_TYPE, verbose=False)
    fit_seconds = time.perf_counter() - t0
    with torch.no_grad():
        w = model.get_weights(deterministic=True).cpu().numpy().astype(float)
    return w, fit_seconds


def margin_error(df, w, marginal):
    errs = [abs(w[(df[var] == cat).to_numpy()].sum() - t) / t
            for var, targets in marginal.items() for cat, t in targets.items()]
    return float(np.mean(errs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lambdas", default="1e-7,1e-6,1e-5,1e-4,1e-3,1e-2")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--warmup-epochs", type=int, default=50, help="untimed warm-up fit; 0 = none")
    ap.add_argument("--n", type=int, default=5000, help="records (the study's [data] n)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    df, train_m, train_c, test_m = make_data(args.n)
    A, b = build_constraints(df, train_m, train_c)
    if args.warmup_epochs > 0:
        fit_hardconcrete(df, train_m, train_c, 1e-5, args.warmup_epochs, seed=0)
    fields = ["lambda_l0", "seed", "epochs", "records", "train_error", "test_error",
              "max_train_rel_error", "fit_seconds", "total_seconds"]
    with open(args.out, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        for lam in [float(x) for x in args.lambdas.split(",")]:
            for seed in [int(x) for x in args.seeds.split(",")]:
                t0 = time.perf_counter()
                w, fit_s = fit_hardconcrete(df, train_m, train_c, lam, args.epochs, seed)
                total_s = time.perf_counter() - t0
                row = {"lambda_l0": lam, "seed": seed, "epochs": args.epochs,
                       "records": int((w > 1e-9).sum()),
                       "train_error": margin_error(df, w, train_m),
                       "test_error": margin_error(df, w, test_m),
                       "max_train_rel_error": float(np.max(np.abs(A @ w - b) / np.abs(b))),
                       "fit_seconds": fit_s, "total_seconds": total_s}
                out.writerow(row)
                fh.flush()
                print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
