"""Server time per app callback on a workspace (target: < 300 ms each, live model runs excluded).

Each callback is called the way the browser calls it (``POST /_dash-update-component`` through
Flask's test client: Dash dispatch, the callback, JSON serialisation of the figures), first once
("first": cold caches, e.g. the quantile sample encoded once per SAE) and then ``--repeats``
times over different choices (features, clips, tokens, layers). Prints JSON.

Example
-------
$ python benchmarks/app_latency.py --workspace workspace/demo --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

TARGET_MS = 300.0


def call(app, client, first_input: str, inputs: list, state: list = (), output: str = "") -> tuple[float, float]:
    """One callback round trip: (wall ms, CPU ms of this process). ``inputs``/``state``: values in
    declared order; ``output``: part of the output ids, when several callbacks share a first input.
    CPU time is what the server itself spends; on a shared, loaded machine the wall
    time also counts waiting for a core."""
    from apps.app import post_callback

    t, c = time.perf_counter(), time.process_time()
    r = post_callback(app, client, first_input, inputs, state, output)
    ms, cpu = (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000
    if r.status_code not in (200, 204):
        raise RuntimeError(f"{first_input}: HTTP {r.status_code}: {r.data[:300]!r}")
    if b"wb-msg wb-error" in r.data:  # a callback that failed shows an error message
        raise RuntimeError(f"{first_input}: the callback showed a message: {r.data[:400]!r}")
    return ms, cpu


def scenarios(ws) -> dict[str, list[tuple[str, list, list]]]:
    """``{name: [(first input, inputs, state[, output]), ...]}``: several different choices per callback."""
    from apps.data import PartError

    out: dict[str, list] = {f"route {p}": [("url.pathname", [p], [""])] for p in
                            ("/", "/features", "/tokens", "/probes", "/eeg", "/steering")}
    refs = ws.saes()
    if refs:
        ref = refs[0]
        table = ws.feature_table(ref).sort_values("fires", ascending=False)
        feats = [int(f) for f in table["feature"].head(6)]
        clips = ws.sae_cache(ref).clip_ids[:6]
        out["features: choose SAE"] = [("feat-sae.value", [ref.key], [None], "feat-sae-info")]
        out["features: filter table"] = [("feat-sae.value", [ref.key, d, p, t, sc], [], "feat-table")
                                         for d, p, t, sc in ((None, None, None, None), (None, "AA", None, None),
                                                             ("speech", None, None, None), (None, None, "a", 0.1))]
        out["features: choose feature"] = [("feat-feature.value", [f], [ref.key], "feat-hist") for f in feats]
        out["features: choose clip"] = [("feat-clip.value", [c], [ref.key]) for c in clips]
    sources = ws.token_sources()
    if sources:
        src = sources[0]
        ids = ws.token_ids(src)
        import numpy as np

        tokens = [int(t) for t in np.unique(ids)[:6]]
        clips = src["tokens"].clip_ids[:6]
        out["tokens: choose cache"] = [("tok-source.value", [src["name"]], [None], "tok-status")]
        out["tokens: show clip"] = [("tok-clip.value", [c, tokens[0]], [src["name"]]) for c in clips]
        out["tokens: choose token"] = [("tok-token.value", [t], [src["name"]]) for t in tokens]
    for run in ws.folders("probes")[:1]:
        hooks = list(ws.probe(run.name)["summary"]["hook"])
        out["probes: choose run"] = [("probe-run.value", [run.name], [None], "probe-info")]
        out["probes: choose layer"] = [("probe-layer.value", [h], [run.name]) for h in hooks]
    for run in ws.folders("neuro")[:1]:
        try:
            n = ws.neuro(run.name)
        except PartError as e:  # e.g. a run still being written
            print(f"app_latency: skipping neuro/{run.name}: {e}", file=sys.stderr)
            continue
        out["eeg: choose run"] = [("eeg-run.value", [run.name], [None], "eeg-status")]
        if n["layers"] is not None:
            from apps.pages.eeg import layer_table

            out["eeg: choose layer"] = [("eeg-layer.value", [str(v)], [run.name])
                                        for v in layer_table(n["layers"])[0]["layer"]]
        out["eeg: choose feature"] = [("eeg-feature.value", [str(f)], [run.name])
                                      for f in n["summary"]["feature"].astype(str).unique()[:6]]
    for run in ws.folders("steering")[:1]:
        out["steering: choose artifact"] = [("steer-run.value", [run.name], [], "steer-info")]
        out["steering: live panel of the artifact"] = [("steer-run.value", [run.name], [None], "steer-clip")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", default="workspace/demo", help="a workspace built with the CLI (make demo)")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the choices after the first call")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait after start-up (warm-up thread)")
    args = ap.parse_args()
    if not Path(args.workspace).is_dir():
        raise SystemExit(f"app_latency: error: no workspace at {args.workspace} (build one with `make demo`)")
    from apps import create_app

    app = create_app(args.workspace)
    client = app.server.test_client()
    client.get("/")  # Dash sets itself up on the first request
    time.sleep(args.settle)  # let the app's background warm-up finish, as it would before a person clicks
    results = {}
    for name, calls in scenarios(app.workspace).items():
        first, first_cpu = call(app, client, *calls[0])
        runs = [call(app, client, *c) for _ in range(args.repeats) for c in calls]
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        results[name] = {"first_ms": round(first, 1), "median_ms": round(statistics.median(wall), 1),
                         "max_ms": round(max(wall), 1), "first_cpu_ms": round(first_cpu, 1),
                         "median_cpu_ms": round(statistics.median(cpu), 1), "max_cpu_ms": round(max(cpu), 1),
                         "calls": len(runs) + 1}
    worst = max(r["max_ms"] for r in results.values())
    worst_cpu = max(r["median_cpu_ms"] for r in results.values())
    print(json.dumps({"workspace": str(app.workspace.root), "target_ms": TARGET_MS, "callbacks": results,
                      "worst_repeat_ms": worst, "worst_first_ms": max(r["first_ms"] for r in results.values()),
                      "worst_median_cpu_ms": worst_cpu, "all_repeats_under_target": worst < TARGET_MS,
                      "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
