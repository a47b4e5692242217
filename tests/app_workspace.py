"""A small workspace for the app tests, built once per test session with the workbench CLI.

Corpus (``corpus synth --n 6``), a whisper-tiny.en cache of two encoder blocks, an auristream-tiny
token cache and a cochleagram cache, a tiny SAE (``sae train --tokens 50000``) with ``sae eval`` and ``sae bench --only explain``,
and a probe run: all real CLI runs. The steering, neuro and conditions parts are hand-written files in the
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
    _cli("sae", "bench", "--sae", ws / "saes" / "block1", "--cache", caches / "tiny", "--only", "explain",
         "--out", ws / "saes" / "block1" / "eval", "--quiet")      # explanations.csv for the Features page
    _cli("probe", "--cache", caches / "tiny", "--target", "phones", "--split", "speaker", "--folds", 2, "--C", 1.0,
         "--out", ws / "probes" / "phones")
    write_steering(ws)
    write_neuro(ws)
    write_conditions(ws)
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


COND_HOOKS = [f"encoder.blocks.{i}.hook_resid_post" for i in range(4)]


def write_conditions(ws: Path, name: str = "fixture", utterances: int = 2, snrs=(0, 5),
                     enhancers=("nsnet2",), transcripts: bool = True) -> Path:
    """``conditions/NAME`` in the layout ``workbench conditions`` writes (:mod:`probes.enhancement`) and
    its mixed corpus ``corpora/NAME-mix`` (the ``corpus mix`` row format), with tone audio and fixture
    numbers: CKA rises with the SNR and with enhancement, and falls with depth."""
    from workbench.audio import save_audio
    from workbench.corpus import Clip, Corpus

    mix, out = ws / "corpora" / f"{name}-mix", ws / "conditions" / name
    (mix / "audio").mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t = np.arange(8000) / 16000
    clips, said, quality = [], [], []
    for u in range(utterances):
        cid, ref = f"utt{u}", f"the fixture sentence number {u}"
        tone = (0.3 * np.sin(2 * np.pi * (220 + 110 * u) * t)).astype(np.float32)
        for snr in (None, *snrs):
            cond = "clean" if snr is None else f"noise_{snr}db"
            noise = np.random.default_rng(u).standard_normal(len(t)).astype(np.float32) * (0 if snr is None else 0.3 / 10 ** (snr / 20))
            cl = Clip(f"{cid}__{cond}", f"audio/{cid}__{cond}.flac", "speech", None, ref, {}, 0.5,
                      {"clean_id": cid, "clean_path": f"audio/{cid}__clean.flac", "source_id": cid, "condition": cond,
                       "snr_db": None if snr is None else float(snr)})
            save_audio(mix / cl.path, tone + noise, 16000)
            clips.append(cl)
            said.append({"clip": cl.id, "condition": cond, "clean_id": cid,
                         "text": ref if snr is None else f"the fixture {cond} {u}"})
            for e in enhancers if snr is not None else ():
                (out / "enhanced" / e).mkdir(parents=True, exist_ok=True)
                save_audio(out / "enhanced" / e / f"{cl.id}.flac", tone + 0.2 * noise, 16000)
                said.append({"clip": f"{cl.id}+{e}", "condition": f"{cond}+{e}", "clean_id": cid,
                             "text": f"the fixture sentence {e} {u}"})
                quality.append({"clip": cl.id, "condition": cond, "enhancer": e, "snr_db": float(snr),
                                "noise_domain": "fixture", "si_snr_noisy_db": float(snr),
                                "si_snr_enhanced_db": snr + 8.0, "improvement_db": 8.0})
    Corpus(clips, root=mix).save(mix / "manifest.jsonl")
    conds = [f"noise_{s}db" for s in snrs] + [f"noise_{s}db+{e}" for s in snrs for e in enhancers]
    gain = {c: (0.3 if "+" in c else 0.0) + 0.04 * int(c.split("_")[1].split("db")[0]) for c in conds}
    pd.DataFrame([{"hook": h, "condition": c, "cka": min(1.0, 0.5 + gain[c] - 0.05 * i),
                   "cka_no_massive": min(1.0, 0.45 + gain[c] - 0.08 * i), "massive_share": 0.01, "frames": 100,
                   "clips": utterances} for h in COND_HOOKS for i in [COND_HOOKS.index(h)] for c in conds]
                 ).to_csv(out / "similarity.csv", index=False)
    pd.DataFrame([{"hook": h, "condition": c, "accuracy": 0.6 - 0.05 * i + (0 if c == "clean" else gain[c] / 3 - 0.25),
                   "majority": 0.15, "frames": 80} for i, h in enumerate(COND_HOOKS) for c in ["clean", *conds]]
                 ).to_csv(out / "robustness.csv", index=False)
    pd.DataFrame([{"condition": c, "wer": 0.1 + 0.1 * k, "errors": k, "words": 10, "clips": utterances}
                  for k, c in enumerate(["clean", *conds])]).to_csv(out / "wer.csv", index=False)
    pd.DataFrame(quality).to_csv(out / "quality.csv", index=False)
    if transcripts:
        pd.DataFrame(said).to_csv(out / "transcripts.csv", index=False)
    (out / "summary.json").write_text(json.dumps({
        "model": "whisper-tiny.en", "enhancers": list(enhancers), "hooks": COND_HOOKS, "clips": len(clips),
        "corpus": str(mix.resolve()), "si_snr_improvement_db": {e: 8.0 for e in enhancers},
        "command": "hand-written test fixture"}))
    return out
