"""Per-feature summaries the app reads: top-activating frames, activation histograms, domain
shares, top phone / word labels.

Files written to ``out``: ``features.parquet`` (one row per feature: firing count, density,
mean / max activation, ``share_<domain>`` columns, ``top_<tier>`` as JSON ``[[label, share], ...]``),
``top_frames.parquet`` (feature, rank, clip_id, start_s, end_s, activation, domain, labels),
``histograms.json`` (``{feature: {"edges": [...], "counts": [...]}}`` of non-zero activations)
and ``features.json`` (the features table as records). :func:`layer_summary` writes the per-layer
table of several SAEs' evaluations (``layers.csv``, ``layers.html``).

Example
-------
>>> X = cache.load(hook, rows); frames = cache.frames(hook).iloc[rows]          # doctest: +SKIP
>>> feature_summaries(sae, X, frames, "work/eval/l3")                            # doctest: +SKIP
>>> layer_summary([json.load(open(p)) for p in eval_jsons], "work/eval")          # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from workbench.atomic import atomic_path, write_json, write_text


@torch.no_grad()
def sparse_codes(sae, X, mode: str | None = None, chunk: int = 8192) -> pd.DataFrame:
    """Non-zero codes of frames ``X`` as a long table (row, feature, activation)."""
    X = torch.as_tensor(X).float()
    parts = []
    for a in range(0, len(X), chunk):
        z = sae.encode(X[a : a + chunk], mode)
        r, f = z.nonzero(as_tuple=True)
        parts.append(pd.DataFrame({"row": (r + a).numpy(), "feature": f.numpy(), "activation": z[r, f].numpy()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["row", "feature", "activation"])


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def feature_summaries(sae, X, frames: pd.DataFrame, out: str | os.PathLike | None = None, top_n: int = 20,
                      bins: int = 20, tiers: Sequence[str] = ("phones", "words"), top_labels: int = 5,
                      mode: str | None = None) -> dict:
    """Summaries of every feature over frames ``X`` described by ``frames`` (row i <-> X[i]).

    ``frames`` needs ``clip_id`` and ``start_s``; ``end_s``, ``domain`` and tier columns are used
    when present. Returns ``{"features", "top_frames", "histograms"}`` and writes them under ``out``.
    """
    frames = frames.reset_index(drop=True)
    if len(frames) != len(X):
        raise ValueError(f"{len(frames)} frame-table rows for {len(X)} frames")
    codes = sparse_codes(sae, X, mode)
    n, m = len(frames), sae.d_sae
    feats = pd.DataFrame({"feature": np.arange(m)})
    grouped = codes.groupby("feature")["activation"]
    feats["fires"] = grouped.size().reindex(feats.feature, fill_value=0).to_numpy()
    feats["density"] = feats["fires"] / max(n, 1)
    feats["mean_activation"] = grouped.mean().reindex(feats.feature, fill_value=0.0).to_numpy()
    feats["max_activation"] = grouped.max().reindex(feats.feature, fill_value=0.0).to_numpy()

    if "domain" in frames:
        dom = frames["domain"].fillna("unknown").astype(str).to_numpy()
        codes["domain"] = dom[codes["row"].to_numpy()]
        per_frame = codes.groupby(["feature", "domain"])["activation"].sum().unstack(fill_value=0.0)
        counts = pd.Series(dom).value_counts()
        mass = per_frame / counts.reindex(per_frame.columns).to_numpy()[None, :]
        shares = mass.div(mass.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
        for d in sorted(counts.index):
            col = shares[d] if d in shares else pd.Series(dtype=float)
            feats[f"share_{d}"] = col.reindex(feats.feature, fill_value=0.0).to_numpy()

    for tier in tiers:
        if tier not in frames:
            continue
        lab = frames[tier].to_numpy(dtype=object)
        c = codes.assign(label=lab[codes["row"].to_numpy()]).dropna(subset=["label"])
        weight = c.groupby(["feature", "label"])["activation"].sum()
        total = weight.groupby(level=0).transform("sum")
        share = (weight / total).rename("share").reset_index().sort_values(["feature", "share"], ascending=[True, False])
        top = share.groupby("feature").head(top_labels)
        lists = top.groupby("feature").apply(lambda g: json.dumps([[str(a), round(float(b), 4)] for a, b in
                                                                   zip(g["label"], g["share"])]), include_groups=False)
        feats[f"top_{tier}"] = lists.reindex(feats.feature, fill_value="[]").to_numpy()

    top_frames = codes.sort_values(["feature", "activation"], ascending=[True, False]).groupby("feature").head(top_n)
    top_frames = top_frames.assign(rank=top_frames.groupby("feature").cumcount())
    cols = [c for c in ("clip_id", "frame", "start_s", "end_s", "domain", *tiers) if c in frames]
    info = frames.iloc[top_frames["row"].to_numpy()][cols].reset_index(drop=True)
    top_frames = pd.concat([top_frames[["feature", "rank", "row", "activation"]].reset_index(drop=True), info], axis=1)

    histograms = {}
    for f, acts in codes.groupby("feature")["activation"]:
        counts_, edges = _histogram(acts.to_numpy(), bins)
        histograms[int(f)] = {"edges": [round(float(e), 6) for e in edges], "counts": counts_.tolist()}

    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _write_parquet(feats, out / "features.parquet")
        _write_parquet(top_frames, out / "top_frames.parquet")
        write_json(out / "histograms.json", histograms)
        write_text(out / "features.json", feats.to_json(orient="records"))
    return {"features": feats, "top_frames": top_frames, "histograms": histograms}


LAYER_COLUMNS = ["hook", "layer", "domain", "frames", "fvu", "l0", "dead_frac", "cosine", "rel_error_median",
                 "wer_clean", "wer_spliced",
                 "wer_change", "median_clip_wer_change", "max_clip_wer_change", "rel_error_hook", "rel_error_output",
                 "in_sample", "fvu_all_frames", "rel_error_median_all_frames", "massive_fraction",
                 "massive_variance_share"]


def _layer_index(hook: str) -> float:
    import re

    m = re.search(r"blocks\.(\d+)\.", hook)
    return float(m.group(1)) if m else float("inf")


def layer_table(results: Sequence[dict]) -> pd.DataFrame:
    """One row per (SAE, domain) from ``sae eval`` results (``eval.json`` dicts), ordered by layer.

    ``domain`` "all" is the pooled row; the spliced WER columns sit on the "all" and "speech" rows
    (the clips with transcripts), relative errors on every domain the splice saw.
    """
    rows = []
    for r in results:
        hook = r["hook"]
        splice = r.get("splice", {})
        dist = splice.get("wer_distribution") or {}
        by_domain = r.get("metrics_by_domain") or {"all": r.get("metrics", {})}
        for dom, m in by_domain.items():
            row = {"hook": hook, "layer": _layer_index(hook), "domain": dom, "in_sample": bool(r.get("in_sample", False)),
                   **{k: m.get(k) for k in ("frames", "fvu", "l0", "dead_frac", "cosine", "rel_error_median")}}
            if dom == "all":  # the massive-frame view (sae.massive): headline vs every frame
                every, massive = r.get("metrics_all_frames") or {}, r.get("massive_frames") or {}
                row.update(fvu_all_frames=every.get("fvu"), rel_error_median_all_frames=every.get("rel_error_median"),
                           massive_fraction=massive.get("fraction"), massive_variance_share=massive.get("variance_share"))
            sp = splice if dom == "all" else splice.get("per_domain", {}).get(dom, {})
            row.update(rel_error_hook=sp.get("rel_error_hook"), rel_error_output=sp.get("rel_error_output"))
            if dom in ("all", "speech") and "wer_clean" in splice:
                row.update(wer_clean=splice["wer_clean"], wer_spliced=splice["wer_spliced"],
                           wer_change=splice["wer_change"], median_clip_wer_change=dist.get("median"),
                           max_clip_wer_change=dist.get("max"))
            rows.append(row)
    table = pd.DataFrame(rows, columns=LAYER_COLUMNS)
    order = {"all": 0}
    table["_d"] = [order.get(d, 1) for d in table["domain"]]
    table = table.sort_values(["layer", "hook", "_d", "domain"], kind="stable").drop(columns="_d")
    table["layer"] = table["layer"].replace(float("inf"), np.nan)
    return table.reset_index(drop=True)


def layer_summary(results: Sequence[dict], out: str | os.PathLike) -> pd.DataFrame:
    """:func:`layer_table` written as ``out/layers.csv`` plus :func:`layer_figure` as ``out/layers.html``."""
    table = layer_table(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "layers.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out / "layers.html") as tmp:
        layer_figure(table).write_html(str(tmp), include_plotlyjs="directory")
    return table


LAYER_PANELS = [("fvu", "FVU"), ("rel_error_median", "per-frame rel. error (median)"), ("l0", "L0"),
                ("dead_frac", "dead fraction"), ("wer_change", "spliced WER change")]


def layer_figure(table: pd.DataFrame):
    """FVU, per-frame relative error, L0, dead fraction and spliced WER change against the layer: one
    line per domain, in the same colour in every panel, one legend entry each."""
    import plotly.colors
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(LAYER_PANELS), subplot_titles=[t for _, t in LAYER_PANELS])
    x_of = table["hook"].map(lambda h: h.replace("encoder.", "").replace(".hook_resid_post", ""))
    palette = plotly.colors.qualitative.Plotly
    for d, dom in enumerate(table["domain"].unique()):
        part = table[table["domain"] == dom]
        colour = palette[d % len(palette)]
        for i, (col, _) in enumerate(LAYER_PANELS, start=1):
            if part[col].notna().any():
                fig.add_trace(go.Scatter(x=x_of[part.index], y=part[col], mode="lines+markers", name=dom,
                                         legendgroup=dom, showlegend=i == 1, line={"color": colour}),
                              row=1, col=i)
    held = "in-sample" if table["in_sample"].any() else "held-out clips"
    fig.update_layout(title=f"SAE quality per layer ({held})", height=420, width=1500,
                      legend={"orientation": "h", "y": -0.15, "title": {"text": "domain"}})
    return fig


def _histogram(x: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram`` in float64, widening a range too narrow for ``bins`` distinct edges (a feature
    whose few activations agree to float precision, e.g. on Whisper's massive-norm frames)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    pad = max(abs(lo), abs(hi), 1.0) * 1e-6
    if hi - lo < pad:
        lo, hi = lo - pad, hi + pad
    return np.histogram(x, bins=bins, range=(lo, hi))
