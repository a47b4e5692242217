"""Benchmark: false-positive rate and power of the group test (sign flips + BH per set, and the
cluster test) on simulated subjects, each a full ``neuro fit`` of 64 channels. Prints JSON.

Every dataset: ``--subjects`` subjects hearing the test corpus (6 clips x 8 s of noise under slow
envelopes, as ``tests/test_neuro_data.make_corpus``), one envelope response planted on Cz and CPz
(``--r``; 0 = none) with each subject's own AR(1) noise; acoustic sets, lags 0..250 ms, 3 folds.

    .venv/bin/python benchmarks/neuro_group_fpr.py --subjects 10 --datasets 3 --r 0.3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

PLANTED = ["Cz", "CPz"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=10)
    p.add_argument("--datasets", type=int, default=3)
    p.add_argument("--r", type=float, default=0.3)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_neuro_data import make_corpus

    from neuro.multi import fit_group
    from neuro.simulate import simulate_subjects

    tmp = Path(tempfile.mkdtemp())
    corpus = make_corpus(tmp / "corpus", n_clips=6, seconds=8.0, seed=4)
    load0, t0 = os.getloadavg(), time.time()
    rows = []
    for rep in range(args.datasets):
        paths = simulate_subjects(corpus, tmp / f"s{rep}", args.subjects, planted=PLANTED, r=args.r, seed=100 * rep)
        g = fit_group(paths, corpus, tmp / f"o{rep}", tmin=0, tmax=0.25, folds=3, n_draws=0, progress=False)["group"]
        null = g[~g["channel"].isin(PLANTED)] if args.r > 0 else g
        hit = g[g["channel"].isin(PLANTED) & (g["feature"] == "envelope")]
        rows.append({"null_tests": len(null), "null_fdr": int(null["significant"].sum()),
                     "null_cluster": int(null["significant_cluster"].sum()),
                     "planted_fdr": int(hit["significant"].sum()) if args.r > 0 else None,
                     "min_null_p": float(null["p"].min())})
    n = sum(r["null_tests"] for r in rows)
    print(json.dumps({"subjects": args.subjects, "channels": 64, "datasets": args.datasets, "r": args.r,
                      "false_positive_rate_fdr": sum(r["null_fdr"] for r in rows) / n,
                      "false_positive_rate_cluster_channels": sum(r["null_cluster"] for r in rows) / n,
                      "planted_found": f"{sum(r['planted_fdr'] or 0 for r in rows)}/{len(PLANTED) * len(rows)}"
                      if args.r > 0 else None, "per_dataset": rows, "wall_s": round(time.time() - t0, 1),
                      "load_before": [round(v, 1) for v in load0],
                      "load_after": [round(v, 1) for v in os.getloadavg()]}, indent=1))


if __name__ == "__main__":
    main()
