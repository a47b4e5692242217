"""The demo's headline figures, read back from the workspace it wrote (files other tools read too).

:func:`headline` collects, for whatever parts exist: the probe's peak layer, each SAE's FVU, L0,
dead fraction and spliced-in WER, the steering's held-out hallucination rate and WER against the
baselines, and the neuro layer curve. ``workbench demo`` prints them (:func:`format_headline`) and
writes them to ``WORKSPACE/demo_figures.json``.

Example
-------
>>> figures = headline("workspace/demo")          # doctest: +SKIP
>>> print(format_headline(figures))               # doctest: +SKIP
probes  phones: peak encoder.blocks.1.hook_resid_post accuracy 0.83 (majority 0.19)
...
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["headline", "format_headline"]

STEER_ARMS = ("baseline", "no_speech_gate", "vad_gate", "steered", "steered+no_speech_gate", "steered+vad_gate")


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _probes(root: Path) -> dict:
    out = {}
    for csv in sorted(root.glob("probes/*/summary.csv")):
        t = pd.read_csv(csv)
        if len(t) and "accuracy" in t:
            best = t.loc[t["accuracy"].idxmax()]
            out[csv.parent.name] = {"peak_hook": best["hook"], "accuracy": round(float(best["accuracy"]), 3),
                                    "majority": round(float(best.get("majority", float("nan"))), 3),
                                    "selectivity": round(float(best.get("selectivity", float("nan"))), 3),
                                    "layers": {r["hook"]: round(float(r["accuracy"]), 3) for _, r in t.iterrows()}}
    return out


def _saes(root: Path) -> dict:
    out = {}
    for ev in sorted(root.glob("saes/*/eval/*/eval.json")):
        doc = _json(ev) or {}
        m, sp = doc.get("metrics", {}), doc.get("splice", {})
        out[f"{ev.parents[2].name}/{ev.parent.name}"] = {
            "fvu": m.get("fvu"), "l0": m.get("l0"), "dead_frac": m.get("dead_frac"),
            "wer_clean": sp.get("wer_clean"), "wer_spliced": sp.get("wer_spliced"),
            "in_sample": doc.get("in_sample")}
    return out


def _steering(root: Path) -> dict:
    out = {}
    for ev in sorted(root.glob("steering/*/eval/eval.json")):
        doc = _json(ev) or {}
        spec = _json(ev.parents[1] / "steering.json") or {}
        arms = {a: {"hallucination_rate": doc[a].get("hallucination_rate"), "wer": doc[a].get("wer")}
                for a in STEER_ARMS if isinstance(doc.get(a), dict)}
        out[ev.parents[1].name] = {"hook": spec.get("hook"), "method": spec.get("method"), "edit": spec.get("edit"),
                                   "n_features": spec.get("n_features"), "strength": spec.get("strength"),
                                   "clips": len(doc.get("clips") or []), "arms": arms}
    return out


def _neuro(root: Path) -> dict:
    out = {}
    for layers in sorted(root.glob("neuro/*/layers.csv")):
        t = pd.read_csv(layers)
        meta = _json(layers.parent / "neuro.json") or {}
        if len(t) and "r_mean" in t:
            curve = {str(r["feature"]): round(float(r["r_mean"]), 4) for _, r in t.iterrows()}
            out[layers.parent.name] = {"data": meta.get("data"), "curve": curve,
                                       "best": max(curve, key=curve.get)}
    return out


def headline(root: str | Path) -> dict:
    """``{"probes", "saes", "steering", "neuro"}`` figures of the workspace (empty where a part is absent)."""
    root = Path(root)
    return {"probes": _probes(root), "saes": _saes(root), "steering": _steering(root), "neuro": _neuro(root)}


def _f(v, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def format_headline(fig: dict) -> str:
    """A few readable lines of :func:`headline`'s figures."""
    lines = []
    for name, p in fig["probes"].items():
        lines.append(f"probes    {name}: peak at {p['peak_hook']}, accuracy {_f(p['accuracy'])} "
                     f"(majority {_f(p['majority'])}, selectivity {_f(p['selectivity'])})")
    for name, s in fig["saes"].items():
        lines.append(f"sae       {name}: FVU {_f(s['fvu'])}, L0 {_f(s['l0'], 1)}, dead {_f(s['dead_frac'])}, "
                     f"WER {_f(s['wer_clean'])} -> {_f(s['wer_spliced'])} spliced in"
                     + (" (in-sample)" if s.get("in_sample") else ""))
    for name, st in fig["steering"].items():
        lines.append(f"steering  {name}: {st['edit']} {st['n_features']} features at {st['hook']} "
                     f"(strength {st['strength']}), {st['clips']} held-out clips")
        for arm, m in st["arms"].items():
            lines.append(f"            {arm:24s} hallucination {_f(m['hallucination_rate'])}  WER {_f(m['wer'])}")
    for name, n in fig["neuro"].items():
        curve = ", ".join(f"{k.replace('encoder.blocks.', 'b').replace('.hook_resid_post', '')} {v:.3f}"
                          for k, v in n["curve"].items())
        lines.append(f"neuro     {name} ({n['data']}): mean r per feature set: {curve}; best {n['best']}")
    return "\n".join(lines)
