"""The sparse-calibration frontier, a plug-in of `kinds`: a study file with `kind = "sparse_frontier"`
(problems/sparse-calibration.toml).

On `datasets.cps_like` (the notebook's sample and targets), each counterpoise mode is swept over its parameter
and every fit is scored as the notebook scores it: records kept (w > 0), train error (mean relative error over
the age-group margins), held-out error (the same over the sex margin) and seconds per fit. The peer, l0-python's
HardConcrete run the way microplex runs it (problems/peers/hardconcrete.py, extra `compare`), is run in a
subprocess when torch and l0 import, or read from the stored results otherwise (the table says which, and why).

    [data]            cps_like arguments (n, seed, target_seed)
    [lasso]           fractions = [...]         lam as fractions of lam_max (backend "prox")
    [capped_lasso]    fraction, caps = [...]    the lasso with w / w0 <= cap: at least N / cap records
    [elastic_net]     ridge = 1.0, fractions = [...]
    [refit]           distance = "raking"       the elastic net's supports, recalibrated exactly
    [exact]           taus = [...]              exact targets (backend "dual")
    [hardconcrete]    script, lambdas, seeds, epochs, results (stored CSV, relative to the study file)
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .. import datasets, families
from ..errors import CounterpoiseError, InfeasibleError, InputError
from .report import save

_KEYS = {"name", "description", "kind", "data", "lasso", "capped_lasso", "elastic_net", "refit", "exact",
         "hardconcrete"}


def check_study(raw, source, folder) -> dict:
    """Validate a sparse_frontier study table read from TOML; the peer's script and results are resolved against
    `folder`."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InputError(f"study {source}: unknown top-level keys {unknown}; a sparse_frontier study has {sorted(_KEYS)}")
    peer = dict(raw.get("hardconcrete", {}))
    for key in ("script", "results"):
        if key in peer:
            peer[key] = folder / peer[key]
    return dict(name=raw.get("name", "sparse-calibration"), description=raw.get("description", ""),
                data=dict(raw.get("data", {})), lasso=raw.get("lasso"), capped_lasso=raw.get("capped_lasso"),
                elastic_net=raw.get("elastic_net"),
                refit=raw.get("refit"), exact=raw.get("exact"), hardconcrete=peer)


def errors(data, weights, margins) -> float:
    """The notebook's metric: mean over the margins' levels of |sum of w over the level - target| / target."""
    values = []
    for var, totals in margins.items():
        for level, total in totals.items():
            values.append(abs(weights[(data[var] == level).to_numpy()].sum() - total) / total)
    return float(np.mean(values))


def _row(mode, parameter, data, weights, seconds, status):
    return dict(method=mode, parameter=parameter, records=int(np.count_nonzero(weights > 0)),
                train_error=errors(data, weights, data.attrs["margins"]),
                test_error=errors(data, weights, data.attrs["held_out"]), seconds=seconds, status=status)


def _timed(solve):
    start = time.perf_counter()
    solution = solve()
    return solution, time.perf_counter() - start


def counterpoise_rows(study, data) -> list:
    rows = []
    if study["lasso"]:
        prob = families.sparse_calibrate(data)
        top = prob.backend("prox").lambda_max()
        for f in study["lasso"]["fractions"]:
            prob.set(lam=f * top)
            sol, seconds = _timed(lambda: prob.solve(backend="prox", raise_on_failure=False))
            rows.append(_row("lasso (prox)", f"lam = {f:g} lam_max", data, sol.weights.to_numpy(), seconds, sol.status))
    if study["capped_lasso"]:
        fraction = study["capped_lasso"]["fraction"]
        for cap in study["capped_lasso"]["caps"]:
            prob = families.sparse_calibrate(data, cap=cap)
            prob.set(lam=fraction * prob.backend("prox").lambda_max())
            sol, seconds = _timed(lambda: prob.solve(backend="prox", raise_on_failure=False))
            rows.append(_row(f"capped lasso (lam = {fraction:g} lam_max)", f"cap = {cap:g}", data,
                             sol.weights.to_numpy(), seconds, sol.status))
    if study["elastic_net"]:
        ridge = study["elastic_net"]["ridge"]
        prob = families.sparse_calibrate(data, ridge=ridge)
        top = prob.backend("prox").lambda_max()
        distance = (study["refit"] or {}).get("distance")
        for f in study["elastic_net"]["fractions"]:
            prob.set(lam=f * top)
            sol, seconds = _timed(lambda: prob.solve(backend="prox", raise_on_failure=False))
            label = f"lam = {f:g} lam_max"
            rows.append(_row(f"elastic net (ridge {ridge:g})", label, data, sol.weights.to_numpy(), seconds,
                             sol.status))
            if distance:
                method = f"elastic net + {distance} refit"
                try:
                    refitted, more = _timed(lambda: families.refit(sol, distance=distance))
                except InfeasibleError as exc:    # the support lost every record of some target's level
                    rows.append(dict(method=method, parameter=label, records=int(np.count_nonzero(sol.weights)),
                                     status=f"infeasible: {exc}"))
                    continue
                w = refitted.weights.reindex(data.index, fill_value=0.0).to_numpy()
                rows.append(_row(method, label, data, w, seconds + more, refitted.status))
    if study["exact"]:
        prob = families.sparse_calibrate(data, exact=True)
        for tau in study["exact"]["taus"]:
            prob.set(tau=tau)
            sol, seconds = _timed(lambda: prob.solve(backend="auto", raise_on_failure=False))
            rows.append(_row("exact targets (tau)", f"tau = {tau:g}", data, sol.weights.to_numpy(), seconds,
                             sol.status))
    return rows


def hardconcrete_rows(study, out_dir, n, stored_n) -> tuple[list, str]:
    """Run the peer on n records when torch and l0 import here and its script is found, else read its stored results
    (made at the study file's n, `stored_n`). Returns (rows, provenance: how the rows were got, or why there are
    none)."""
    peer = study["hardconcrete"]
    if not peer:
        return [], ""
    script, results = peer["script"], peer["results"]
    missing = [m for m in ("torch", "l0") if importlib.util.find_spec(m) is None]
    if missing:
        why = f"{' and '.join(missing)} cannot be imported (the extra compare: torch, l0-python)"
    elif not script.is_file():
        why = f"no peer script {str(script)!r}"
    else:
        with tempfile.TemporaryDirectory() as folder, resources.as_file(script) as path:
            out = Path(out_dir or folder) / "hardconcrete.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, str(path), "--lambdas", ",".join(f"{x:g}" for x in peer["lambdas"]),
                       "--seeds", ",".join(str(s) for s in peer["seeds"]), "--epochs", str(peer["epochs"]),
                       "--n", str(n), "--out", str(out)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise CounterpoiseError("the HardConcrete peer failed: " + " ".join(done.stderr.splitlines()[-3:]))
            return _peer_rows(pd.read_csv(out)), "run now"
    if not results.is_file():
        return [], f"skipped: not run ({why}) and no stored results at {str(results)!r}"
    if n != stored_n:
        return [], f"skipped: not run ({why}), and its stored results are for n = {stored_n}, not n = {n}"
    with results.open("r", encoding="utf-8") as stored:
        return _peer_rows(pd.read_csv(stored)), f"stored results ({results.name}); not run here: {why}"


def _peer_rows(table) -> list:
    return [dict(method="HardConcrete (l0-python)", parameter=f"lambda_l0 = {r.lambda_l0:g}, seed {int(r.seed)}",
                 records=int(r.records), train_error=r.train_error, test_error=r.test_error,
                 seconds=r.fit_seconds, status="no convergence test (fixed epochs)") for r in table.itertuples()]


def run(study, out_dir="results", quiet=False, sizes=None) -> pd.DataFrame:
    """Run a checked sparse_frontier study; write <out_dir>/<name>.csv, .md and .png unless out_dir is None.
    `sizes`: one n to draw the sample at instead of the file's (the frontier is one sample)."""
    bound = inspect.signature(datasets.cps_like).bind(**study["data"])
    bound.apply_defaults()
    arguments, stored_n = dict(bound.arguments), bound.arguments["n"]
    if sizes is not None:
        sizes = [sizes] if isinstance(sizes, int) else list(sizes)
        if len(sizes) != 1 or isinstance(sizes[0], bool) or not isinstance(sizes[0], (int, np.integer)) or sizes[0] < 2:
            raise InputError(f"a sparse_frontier study is one sample: give one size (an integer >= 2), got {sizes!r}")
        arguments["n"] = int(sizes[0])
    data = datasets.cps_like(**arguments)
    rows = counterpoise_rows(study, data)
    peer_rows, provenance = hardconcrete_rows(study, out_dir, arguments["n"], stored_n)
    df = pd.DataFrame(rows + peer_rows)
    df.insert(0, "study", study["name"])
    df.attrs.update(kind="sparse_frontier", provenance=provenance)
    if not quiet:
        print(f"{len(rows)} counterpoise fits, {len(peer_rows)} HardConcrete fits ({provenance})", file=sys.stderr)
    if out_dir is not None:
        csv_path, _ = save(df, out_dir, study["name"], study["description"], markdown_table(df))
        frontier_plot(df).savefig(csv_path.with_suffix(".png"), dpi=120)
    return df


def comparison(df) -> pd.DataFrame:
    """Per HardConcrete lambda (means over seeds), the counterpoise fit of each mode with the nearest record
    count (on a log scale, within a factor of 1.5), side by side."""
    peer = df[df["method"].str.startswith("HardConcrete")].copy()
    peer["lambda"] = peer["parameter"].str.extract(r"lambda_l0 = ([^,]+)")[0]
    grouped = peer.groupby("lambda", sort=False)[["records", "train_error", "test_error", "seconds"]].mean()
    ours = df[~df["method"].str.startswith("HardConcrete") & df["train_error"].notna()]
    rows = []
    for lam, hc in grouped.iterrows():
        for method, group in ours.groupby("method", sort=False):
            positive = group[group["records"] > 0]
            if positive.empty:
                continue
            distance = np.abs(np.log(positive["records"].to_numpy()) - np.log(hc["records"]))
            if distance.min() > np.log(1.5):
                continue
            best = positive.iloc[int(np.argmin(distance))]
            rows.append(dict(hc_lambda=lam, hc_records=hc["records"], hc_train=hc["train_error"],
                             hc_test=hc["test_error"], hc_seconds=hc["seconds"], method=method,
                             records=best["records"], train=best["train_error"], test=best["test_error"],
                             seconds=best["seconds"]))
    return pd.DataFrame(rows)


def markdown_table(df) -> str:
    """Every fit as a table row, then the nearest record counts side by side (`comparison`) and the peer's
    provenance."""
    lines = ["| method | parameter | records | train error | held-out error | ms per fit | status |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in df.itertuples():
        if np.isnan(r.train_error):
            lines.append(f"| {r.method} | {r.parameter} | {r.records} | – | – | – | {r.status} |")
            continue
        lines.append(f"| {r.method} | {r.parameter} | {r.records} | {r.train_error:.4f} | {r.test_error:.4f} | "
                     f"{1000 * r.seconds:.1f} | {r.status} |")
    table = comparison(df)
    if not table.empty:
        lines += ["", "Nearest record counts (HardConcrete: mean over seeds):", "",
                  "| HC lambda | HC records | HC train | HC held-out | HC s | mode | records | train | held-out | "
                  "ms | speed-up |", "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in table.itertuples():
            lines.append(f"| {r.hc_lambda} | {r.hc_records:.0f} | {r.hc_train:.4f} | {r.hc_test:.4f} | "
                         f"{r.hc_seconds:.2f} | {r.method} | {r.records} | {r.train:.4f} | {r.test:.4f} | "
                         f"{1000 * r.seconds:.1f} | {r.hc_seconds / r.seconds:.0f}x |")
    if df.attrs.get("provenance"):
        lines += ["", f"HardConcrete: {df.attrs['provenance']}."]
    return "\n".join(lines)


def frontier_plot(df):
    """Records kept (log scale) against held-out and train error, one line per method."""
    from matplotlib.figure import Figure

    axes = Figure(figsize=(7.5, 6.4)).subplots(2, 1, sharex=True)
    for method, group in df[df["train_error"].notna()].groupby("method", sort=False):
        group = group[group["records"] > 0].sort_values("records")
        style = "o" if method.startswith("HardConcrete") else ".-"
        for axis, column in zip(axes, ("test_error", "train_error")):
            axis.plot(group["records"], group[column], style, label=method, alpha=0.8)
    axes[0].set_ylabel("held-out error (sex margin)")
    axes[1].set_ylabel("train error (age margins)")
    axes[1].set_xlabel("records kept (w > 0)")
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=7)
    return axes[0].figure
