"""Peer benchmark: Meta's ``balance`` raking on categorical margins.

Measures the wall time (``time.perf_counter``) of one call to balance's rake
(``balance.weighting_methods.rake.rake``, the function behind
``Sample.adjust(method="rake")``) and the accuracy of the weights it returns
against known population margins. Run it with the interpreter of the separate
venv that holds balance (it pins numpy<2, scipy<1.14):

    /work/envs/balance/bin/python balance_rake.py --data DATA.npz \
        --targets TARGETS.json --out OUT.json [--repeat 1] [--api function|sample]

Inputs
  DATA.npz      ``codes`` (n x V int, level index per record and variable) and
                ``base_weights`` (n floats, the design weights).
  TARGETS.json  ``{"variables": [...], "totals": [[...], ...]}``; totals[j][l]
                is the population total of level l of variable j.

Outputs
  OUT.json          versions, ``seconds`` (min over repeats of the rake call
                    alone), ``seconds_all``, ``prep_seconds`` (building the
                    DataFrames and the target), achieved totals, max relative
                    error, sum of weights, n, iterations, converged flag.
  OUT.weights.npy   the returned weights, in record order.

Settings. balance's IPF runs over the dense joint table of all variables
(prod of level counts cells) and stops when, after a full sweep,
``conv = max_{j,l} |margin_jl / target_jl - 1|`` is <= ``convergence_rate``, or
when ``|conv - conv_prev| <= rate_tolerance``, or after ``max_iteration``
sweeps. Defaults there are 5e-4 / 1e-8 / 1000, which are loose; here we ask
for ``convergence_rate=1e-12``, ``rate_tolerance=0`` (never stop on a stalled
rate before max_iteration) and ``max_iteration=10000``. We also pass
``transformations=None``: balance's default runs ``fct_lump`` on string
columns, which merges levels with < 5% of rows into ``_lumped_other`` and would
change the problem. No trimming (balance's defaults are already None).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd


def level_names(n_levels: int) -> np.ndarray:
    return np.array([f"L{l}" for l in range(n_levels)], dtype=object)


def target_frame(variables: list[str], totals: list[np.ndarray]) -> tuple[pd.DataFrame, pd.Series]:
    """Build a weighted target frame whose weighted margins equal ``totals``.

    balance's rake only reads the target through its weighted one-way margins
    (``target_df.groupby(v)[weight].sum()``), so any joint distribution with the
    right margins is an exact target. We use the comonotone ("north-west
    corner") coupling: lay every variable's levels end to end on [0, N] (level
    l of variable j covers [C_j,l-1, C_j,l) with C the cumulative totals), cut
    [0, N] at the union of all breakpoints, and make one row per piece: its
    weight is the piece length and its level for variable j is the level whose
    interval contains the piece. Each level's rows then tile its interval, so
    its weighted total is C_j,l - C_j,l-1 = t_jl (telescoping; only floating
    point rounding of order eps*N, no integer rounding). At most
    sum_j L_j - V + 1 rows. A level with total 0 has no piece, so it gets one
    extra row of weight 0 (balance rejects sample levels absent from the
    target). Assumes all variables sum to the same N (the first one's is used).
    """
    n_total = float(np.sum(totals[0]))
    cums = [np.cumsum(t, dtype=np.float64) for t in totals]
    cuts = np.unique(np.concatenate([[0.0, n_total]] + [c[:-1] for c in cums]))
    cuts = cuts[(cuts >= 0.0) & (cuts <= n_total)]
    mids = 0.5 * (cuts[:-1] + cuts[1:])
    levels = [np.searchsorted(c[:-1], mids, side="right") for c in cums]
    weights = np.diff(cuts)
    for j, t in enumerate(totals):  # zero-total levels: one weight-0 row each
        for l in np.flatnonzero(np.asarray(t) == 0):
            for k in range(len(totals)):
                levels[k] = np.append(levels[k], l if k == j else levels[k][0])
            weights = np.append(weights, 0.0)
    df = pd.DataFrame({v: level_names(len(t))[lv] for v, t, lv in zip(variables, totals, levels)})
    return df, pd.Series(weights, index=df.index)


def run_rake(api, sample_df, base_w, tgt_df, tgt_w, variables, settings):
    """One rake fit; returns (weights in record order, model dict or None)."""
    if api == "function":
        from balance.weighting_methods.rake import rake

        res = rake(sample_df, base_w, tgt_df, tgt_w, variables=variables, **settings)
        return res["weight"].reindex(sample_df.index).to_numpy(), res["model"]
    from balance import Sample  # public path: Sample.from_frame(...).set_target(...).adjust(...)

    s = Sample.from_frame(sample_df.assign(id=np.arange(len(sample_df)), weight=base_w.to_numpy()),
                          id_column="id", weight_column="weight")
    t = Sample.from_frame(tgt_df.assign(id=np.arange(len(tgt_df)), weight=tgt_w.to_numpy()),
                          id_column="id", weight_column="weight")
    adj = s.set_target(t).adjust(method="rake", variables=variables, **settings)
    return adj.weights().df.iloc[:, 0].to_numpy(), getattr(adj, "model", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--api", choices=["function", "sample"], default="function")
    ap.add_argument("--convergence-rate", type=float, default=1e-12)
    ap.add_argument("--rate-tolerance", type=float, default=0.0)
    ap.add_argument("--max-iteration", type=int, default=10000)
    args = ap.parse_args()

    import balance, scipy  # noqa: E401  (balance logs a banner on import)

    logging.getLogger("balance").setLevel(logging.WARNING)  # keep warnings, drop INFO chatter

    data = np.load(args.data)
    codes, base = np.asarray(data["codes"]), np.asarray(data["base_weights"], dtype=np.float64)
    spec = json.loads(Path(args.targets).read_text())
    variables = list(spec["variables"])
    totals = [np.asarray(t, dtype=np.float64) for t in spec["totals"]]
    n = codes.shape[0]

    t0 = time.perf_counter()
    sample_df = pd.DataFrame({v: level_names(len(t))[codes[:, j]] for j, (v, t) in enumerate(zip(variables, totals))})
    base_w = pd.Series(base, index=sample_df.index)
    tgt_df, tgt_w = target_frame(variables, totals)
    prep_seconds = time.perf_counter() - t0

    settings = dict(transformations=None, max_iteration=args.max_iteration,
                    convergence_rate=args.convergence_rate, rate_tolerance=args.rate_tolerance,
                    weight_trimming_mean_ratio=None, weight_trimming_percentile=None)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        w, model = run_rake(args.api, sample_df, base_w, tgt_df, tgt_w, variables, settings)
        times.append(time.perf_counter() - t0)

    achieved = [np.bincount(codes[:, j], weights=w, minlength=len(t)) for j, t in enumerate(totals)]
    frame_margins = [tgt_w.groupby(tgt_df[v]).sum().reindex(level_names(len(t))).to_numpy()
                     for v, t in zip(variables, totals)]
    pos = [t > 0 for t in totals]
    rel = lambda a: max(float(np.max(np.abs(x[p] - t[p]) / t[p])) for x, t, p in zip(a, totals, pos))
    iters = model.get("iterations") if isinstance(model, dict) else None
    out = {
        "package": "balance", "api": args.api,
        "versions": {"balance": balance.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "pandas": pd.__version__},
        "settings": {k: v for k, v in settings.items()},
        "n": n, "n_variables": len(variables), "levels": [len(t) for t in totals],
        "seconds": min(times), "seconds_all": times, "prep_seconds": prep_seconds,
        "iterations": None if iters is None else int(len(iters)),
        "final_conv": None if iters is None or len(iters) == 0 else float(iters["conv"].iloc[-1]),
        "converged": None if not isinstance(model, dict) else int(model.get("converged", -1)),
        "target_frame_rows": int(len(tgt_df)),
        "target_frame_max_rel_error": rel(frame_margins),
        "max_rel_error": rel(achieved),
        "sum_weights": float(w.sum()), "target_N": float(totals[0].sum()),
        "variables": variables,
        "achieved_totals": [a.tolist() for a in achieved],
    }
    out_path = Path(args.out)
    out_path.write_text(json.dumps(out, indent=1))
    np.save(out_path.with_name(out_path.stem + ".weights.npy"), w)
    print(json.dumps({k: out[k] for k in ("api", "n", "seconds", "prep_seconds", "iterations",
                                          "converged", "max_rel_error", "sum_weights")}))


if __name__ == "__main__":
    main()
