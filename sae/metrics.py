"""Reconstruction and sparsity metrics: FVU, L0, dead / dense fractions, feature densities.

Example
-------
>>> m = evaluate(sae, cache.batches(hook, 4096, shuffle=False))     # doctest: +SKIP
>>> m["fvu"], m["l0"], m["dead_frac"]                               # doctest: +SKIP
>>> density_histogram(m["density"], "work/eval/density.html")      # doctest: +SKIP
>>> evaluate_by_domain(sae, X, domains)["speech"]["fvu"]              # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import torch

from workbench.atomic import atomic_path


@torch.no_grad()
def evaluate(sae, batches: Iterable[torch.Tensor], mode: str | None = None, dense_above: float = 0.1,
             max_frames: int | None = None) -> dict:
    """Metrics of ``sae`` over ``batches`` of raw ``[B, d_in]`` frames (same units it was trained on).

    Returns ``fvu`` (sum of squared errors / total variance about the mean, pooled over all frames),
    ``explained_variance = 1 - fvu``, ``mse`` (per frame, summed over d), ``cosine`` (mean cosine
    between x and x_hat), ``l0`` (mean active features per frame), ``dead_frac`` (features that never
    fire), ``dense_frac`` (features firing on more than ``dense_above`` of frames), ``frames``, and
    ``density`` (per-feature firing rate, numpy array; not JSON-safe, see :func:`to_json`), and the
    per-frame relative error ``||x - x_hat|| / ||x||``: ``rel_error_median``, ``rel_error_mean``,
    ``rel_error_q90``. Report those beside FVU: in Whisper's residual stream a few massive-norm
    frames (25x the median norm) hold most of the variance, so a pooled FVU of 0.02 can hide a
    typical frame reconstructed with 35% error.
    """
    m = sae.d_sae
    fires = torch.zeros(m, dtype=torch.long)
    n = 0
    sse = 0.0
    sum_x = None
    sum_sq = 0.0
    cos = 0.0
    l0 = 0
    rel_errors = []
    for x in batches:
        x = x.float().reshape(-1, sae.d_in)
        if max_frames is not None and n + len(x) > max_frames:
            x = x[: max_frames - n]
        if len(x) == 0:
            break
        z = sae.encode(x, mode)
        x_hat = sae.decode(z)
        active = z > 0
        fires += active.sum(dim=0)
        l0 += int(active.sum())
        sse += float((x - x_hat).pow(2).sum(dtype=torch.float64))
        sum_x = x.sum(0, dtype=torch.float64) if sum_x is None else sum_x + x.sum(0, dtype=torch.float64)
        sum_sq += float(x.double().pow(2).sum())
        cos += float(torch.nn.functional.cosine_similarity(x, x_hat, dim=1).sum())
        rel_errors.append(((x - x_hat).norm(dim=1) / x.norm(dim=1).clamp_min(1e-12)).numpy())
        n += len(x)
        if max_frames is not None and n >= max_frames:
            break
    if n == 0:
        raise ValueError("evaluate: no frames given")
    total_var = sum_sq - float((sum_x * sum_x).sum()) / n
    fvu = sse / total_var if total_var > 0 else float("nan")
    density = (fires.double() / n).numpy()
    return {
        "frames": n, "fvu": fvu, "explained_variance": 1.0 - fvu, "mse": sse / n, "cosine": cos / n,
        "l0": l0 / n, "dead_frac": float((fires == 0).double().mean()),
        "dense_frac": float((density > dense_above).mean()), "dense_above": dense_above, "density": density,
        **_rel_error_summary(np.concatenate(rel_errors)),
    }


def _rel_error_summary(rel: np.ndarray) -> dict:
    return {"rel_error_median": float(np.median(rel)), "rel_error_mean": float(rel.mean()),
            "rel_error_q90": float(np.quantile(rel, 0.9))}


def to_json(metrics: dict) -> dict:
    """``metrics`` without numpy arrays (the per-feature density becomes summary quantiles)."""
    out = {k: v for k, v in metrics.items() if not isinstance(v, np.ndarray)}
    if "density" in metrics:
        d = np.asarray(metrics["density"])
        alive = d[d > 0]
        out["density_quantiles_alive"] = {str(q): float(np.quantile(alive, q)) for q in (0.1, 0.5, 0.9)} if len(alive) else {}
    return out


def density_histogram(density: np.ndarray, path: str | os.PathLike | None = None, title: str = "Feature density"):
    """Plotly histogram of log10 firing rates (dead features counted separately); saved as HTML if ``path``."""
    import plotly.graph_objects as go

    density = np.asarray(density, dtype=float)
    alive = density[density > 0]
    fig = go.Figure(go.Histogram(x=np.log10(alive), nbinsx=60, name="alive features"))
    fig.update_layout(
        title=f"{title}: {len(alive)} alive, {int((density == 0).sum())} dead of {len(density)}",
        xaxis_title="log10(fraction of frames on which the feature fires)", yaxis_title="features",
        bargap=0.02,
    )
    if path is not None:
        with atomic_path(path) as tmp:  # plotly.min.js lands next to it: same folder
            fig.write_html(str(tmp), include_plotlyjs="directory")
    return fig


def evaluate_by_domain(sae, X: torch.Tensor, domains, mode: str | None = None, chunk: int = 8192) -> dict:
    """:func:`evaluate` over all frames ``X`` and per domain label (pass each through :func:`to_json` to save).

    Returns ``{"all": {...}, "<domain>": {...}, ...}``; ``dead_frac`` per domain counts the
    features that never fire on that domain's frames.
    """
    domains = np.asarray(domains, dtype=object).astype(str)
    if len(domains) != len(X):
        raise ValueError(f"{len(domains)} domain labels for {len(X)} frames")
    out = {"all": evaluate(sae, X.split(chunk), mode)}
    for d in sorted(set(domains)):
        out[d] = evaluate(sae, X[torch.from_numpy(domains == d)].split(chunk), mode)
    return out
