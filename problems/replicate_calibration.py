"""Recalibrating every replicate of a replicate design: the Deville-Sarndal Newton warm-started from the full
sample's dual point (`ReplicateDesign.calibrate`) against solving each replicate cold with the cvxpy reference
(CLARABEL), on apistrat's Rao-Wu bootstrap replicates calibrated to stype, sch.wide and the api99 total.

    python problems/replicate_calibration.py [--replicates 200] [--timed 20]

cvxpy is timed on the first `timed` replicates and scaled to all of them; both give the same weights (the tests
check that replicate by replicate).
"""

import argparse
import time
import warnings

import counterpoise as cpz

POP = cpz.datasets.API_POPULATION
TARGETS = dict(margins={"stype": POP["stype"], "sch.wide": POP["sch.wide"]}, totals={"api99": POP["api99"]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--timed", type=int, default=20)
    args = parser.parse_args()
    strat = cpz.datasets.api("apistrat")
    design = cpz.SurveyDesign(strat, weights="pw", strata="stype", fpc="fpc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cpz.CounterpoiseWarning)      # the bootstrap does not use the fpc
        replicates = design.replicates("bootstrap", replicates=args.replicates, seed=1)
    print("| distance | replicates | Newton, warm (s) | mean iterations | cvxpy cold (s, scaled) | ratio | "
          "SE of mean api00 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for distance in ("linear", "raking"):
        start = time.perf_counter()
        calibrated = replicates.calibrate(distance=distance, progress=False, **TARGETS)
        newton = time.perf_counter() - start
        start = time.perf_counter()
        for r in range(args.timed):
            d = replicates.replicate_weights[:, r]
            keep = d > 0
            cpz.calibrate(strat[keep], base_weights=d[keep], distance=distance, **TARGETS).solve(backend="cvxpy")
        cold = (time.perf_counter() - start) / args.timed * args.replicates
        iterations = calibrated.replicate_status.iterations.mean()
        print(f"| {distance} | {args.replicates} | {newton:.2f} | {iterations:.1f} | {cold:.1f} | "
              f"{cold / newton:.0f}x | {calibrated.mean('api00').se:.4f} |")


if __name__ == "__main__":
    main()
