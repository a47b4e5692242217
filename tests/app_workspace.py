"""A small workspace for the app tests, built once per test session with the workbench CLI.

Corpus (``corpus synth --n 6``), a whisper-tiny.en cache of two encoder blocks, an auristream-tiny
token cache and a cochleagram cache, a tiny SAE (``sae train --tokens 50000``) with ``sae eval``,
and a probe run: all real CLI runs. The steering and neuro parts are hand-written files in the
documented formats (``workbench.steering`` and the neuro summary columns), labelled as fixtures:
their numbers are not results, they only give the pages something to draw.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

HOOK = "encoder.blocks.1.hook_resid_post"
_BUILT: dict[str, Path] = {}


def _cli(*args: str) -> None:
    from workbench.cli import main

    rc = main([str(a) for a in args])
    if rc not in (0, None):
        raise RuntimeError(f"workbench {' '.join(map(str, args))} exited with {rc}")


def build(root: Path) -> Path:
    """Build (once per process) the workspace under ``root``; returns its directory."""
    if "ws" in _BUILT:
        return _BUILT["ws"]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ws = _build(Path(root))
    finally:
        torch.set_num_threads(threads)
    _BUILT["ws"] = ws
    return ws


def _build(ws: Path) -> Path:
    corpus, caches = ws / "corpora" / "synth", ws / "caches"
    _cli("corpus", "synth", "--n", 6, "--out", corpus, "--seed", 0, "-q")
    _cli("cache", "--model", "whisper-tiny.en", "--corpus", corpus, "--hooks", "encoder.blocks.0.hook_resid_post",
         HOOK, "--out", caches / "tiny", "--quiet")
    _cli("cache", "--model", "auristream-tiny", "--corpus", corpus, "--hooks", "tokens.hook_ids",
         "--out", caches / "tokens", "--quiet")
    _cli("cache", "--model", "cochleagram", "--corpus", corpus, "--hooks", "cochleagram.hook_out",
         "--out", caches / "cochleagram", "--quiet")
    _cli("sae", "train", "--cache", caches / "tiny", "--hook", HOOK, "--expansion", 4, "--k", 16, "--tokens", 50000,
         "--batch-size", 256, "--threads", 1, "--out", ws / "saes" / "block1", "--quiet")
    _cli("sae", "eval", "--sae", ws / "saes" / "block1", "--cache", caches / "tiny",
         "--out", ws / "saes" / "block1" / "eval", "--quiet")
    _cli("probe", "--cache", caches / "tiny", "--target", "phones", "--split", "speaker", "--folds", 2, "--C", 1.0,
         "--out", ws / "probes" / "phones")
    write_steering(ws)
    write_neuro(ws)
    (ws / "workspace.json").write_text(json.dumps({"parts": {
        "corpora/synth": {"command": "workbench corpus synth --n 6"},
        "probes/phones": {"command": "workbench probe --target phones --folds 2"}}}))
    return ws


def write_steering(ws: Path, name: str = "fixture") -> Path:
    """``steering/NAME`` in the ``workbench.steering/1`` format on the workspace's SAE (fixture numbers)."""
    sae_dir = ws / "saes" / "block1" / HOOK
    feats = pd.read_parquet(ws / "saes" / "block1" / "eval" / HOOK / "features.parquet")
    top = feats.sort_values("fires", ascending=False)["feature"].head(4).astype(int).tolist()
    out = ws / "steering" / name
    (out / "eval").mkdir(parents=True, exist_ok=True)
    spec = {"format": "workbench.steering/1", "model": "whisper-tiny.en", "hook": HOOK, "d_model": 384,
            "method": "sae", "sae": os.path.relpath(sae_dir, out), "edit": "scale", "strength": 0.0,
            "features": [{"index": f, "effect_size": 1.0 - 0.1 * i, "auroc": 0.9} for i, f in enumerate(top)],
            "n_features": 2, "gate": "none", "concept": "fixture", "command": "hand-written test fixture"}
    (out / "steering.json").write_text(json.dumps(spec))
    grid = [(n, s) for n in (1, 2, 4) for s in (0.0, 0.5)]
    pd.DataFrame({"n_features": [n for n, _ in grid], "strength": [s for _, s in grid],
                  "wer": [0.2 + 0.02 * n * (1 - s) for n, s in grid],
                  "hallucination_rate": [0.5 - 0.08 * n * (1 - s) for n, s in grid]}).to_csv(out / "sweep.csv", index=False)
    from workbench.corpus import load_corpus

    clips = [{"id": c.id, "domain": c.domain, "reference": c.transcript, "baseline": c.transcript or "",
              "steered": (c.transcript or "").lower()} for c in load_corpus(ws / "corpora" / "synth")][:3]
    arms = {"baseline": {"hallucination_rate": 0.5, "wer": 0.2}, "steered": {"hallucination_rate": 0.3, "wer": 0.24},
            "no_speech_gate": {"hallucination_rate": 0.4, "wer": 0.21}, "vad_gate": {"hallucination_rate": 0.35, "wer": 0.22}}
    (out / "eval" / "eval.json").write_text(json.dumps({**arms, "clips": clips}))
    return out


def write_neuro(ws: Path, name: str = "fixture") -> Path:
    """``neuro/NAME`` in the layout :mod:`neuro` documents (tables, ``kernels/SET.npy`` in MNE order,
    a topomap PNG, ``neuro.json``), with fixture numbers."""
    out = ws / "neuro" / name
    (out / "kernels").mkdir(parents=True, exist_ok=True)
    (out / "topomaps").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    channels = ["Fz", "Cz", "Pz", "T7", "T8", "Oz"]
    sets = [("acoustic", "acoustic"), ("encoder.blocks.0.hook_resid_post", "layer"), (HOOK, "layer")]
    rows = [{"feature": f, "kind": k, "channel": c, "r": round(float(0.05 + 0.1 * i + 0.02 * rng.standard_normal()), 4),
             "r_cv_mean": 0.1, "best_lag_s": 0.1, "p": 0.01 * (3 - i), "p_fdr": 0.02 * (3 - i), "significant": i > 0}
            for i, (f, k) in enumerate(sets) for c in channels]
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    pd.DataFrame({"feature": [f for f, _ in sets], "kind": [k for _, k in sets], "hook": [None, sets[1][0], HOOK],
                  "r_mean": [0.05, 0.15, 0.25], "r_sem": [0.01, 0.02, 0.02], "order": [0, 1, 2]}
                 ).to_csv(out / "layers.csv", index=False)
    feats = pd.read_parquet(ws / "saes" / "block1" / "eval" / HOOK / "features.parquet")
    sae_feats = feats.sort_values("fires", ascending=False)["feature"].head(2).astype(int).tolist()
    pd.DataFrame([{"feature_set": fs, "feature": f, "channel": c, "r": 0.1, "best_lag_s": 0.12,
                   "p": 0.01, "p_fdr": 0.03, "significant": True} for c in channels
                  for fs, f in [("envelope", "envelope")] + [(f"sae:{HOOK}", f"f{i}") for i in sae_feats]]
                 ).to_csv(out / "features.csv", index=False)
    lags = np.arange(-0.1, 0.41, 0.01)
    np.save(out / "kernels" / "acoustic.npy",
            np.stack([[np.sin(lags * 10 + i), 0.5 * np.cos(lags * 25 + i)] for i in range(len(channels))]).astype(np.float32))
    (out / "neuro.json").write_text(json.dumps({"data": "fixture", "sfreq": 100.0, "tmin": -0.1, "tmax": 0.4,
                                                "channels": channels, "kernel_lags_s": lags.tolist()}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.scatter([0, 0, 0, -1, 1, 0], [1, 0, -1, 0, 0, -1.5], c=[r["r"] for r in rows[-6:]], s=200)
    ax.set_axis_off()
    fig.savefig(out / "topomaps" / "acoustic.png", dpi=60)
    plt.close(fig)
    return out
