"""``fit``: a recording + a corpus (+ model hooks, SAEs) -> the files of one neuro run.

Example
-------
>>> from neuro import fit, simulate_eeg
>>> fif = simulate_eeg(corpus, "work/sim/sub-sim_eeg.fif")                           # doctest: +SKIP
>>> res = fit(fif, corpus, "work/ws/neuro/sim", model="whisper-tiny.en",
...           hooks=["encoder.blocks.*.hook_resid_post"])                            # doctest: +SKIP
>>> res.layers[["feature", "r_mean", "delta_r2_mean"]]                               # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from neuro import outputs
from neuro.lagged import lag_samples
from neuro.naplib_sample import NAPLIB_DESCRIPTION
from neuro.recording import Recording, read_recording
from neuro.stats import fdr, lagged_correlation
from neuro.stimulus import FeatureSet, acoustic_sets, model_sets
from neuro.trf import DEFAULT_ALPHAS, Block, assign_folds, fit_trf
from workbench.conventions import resolve_hooks
from workbench.corpus.types import Corpus

log = logging.getLogger(__name__)

__all__ = ["NeuroResult", "fit", "fit_feature_sets", "default_cache_root", "data_label"]

ACOUSTIC = "acoustic"  # envelope + spectrogram together: the baseline for delta R^2


@dataclass
class NeuroResult:
    out: Path
    summary: pd.DataFrame
    layers: pd.DataFrame
    features: pd.DataFrame
    meta: dict


def default_cache_root(out: Path) -> Path:
    """``WORKSPACE/caches`` when ``out`` is ``WORKSPACE/neuro/NAME``, else ``out/../caches``."""
    out = Path(out).resolve()
    return (out.parent.parent if out.parent.name == "neuro" else out.parent) / "caches"


def data_label(rec: Recording) -> str:
    """Which data this is: ``"naplib sample"``, ``"simulated"`` or ``"recorded"``."""
    desc = (rec.description or "").lower()
    if desc.startswith(NAPLIB_DESCRIPTION):
        return NAPLIB_DESCRIPTION
    if desc.startswith("simulated"):
        return "simulated"
    return "recorded"


def _combined(a: FeatureSet, b: FeatureSet, name: str) -> FeatureSet:
    return FeatureSet(name, "combined", [np.concatenate([x, y], axis=1) for x, y in zip(a.trials, b.trials)],
                      block=None, columns=a.columns + b.columns)  # type: ignore[arg-type]


def _alpha_rel(alphas, res) -> float:
    """Geometric mean over folds of the relative alpha that inner CV chose."""
    return float(np.exp(np.mean(np.log(np.asarray(alphas, dtype=np.float64)[res.alpha_index]))))


def _r2(r: np.ndarray) -> np.ndarray:
    """Signed explained variance of a prediction correlation (a negative r explains nothing)."""
    return np.sign(r) * r**2


def fit_feature_sets(sets: Sequence[FeatureSet], responses: Sequence[np.ndarray], sfreq: float, ch_names: Sequence[str],
                     *, tmin: float = -0.1, tmax: float = 0.5, folds: int = 5, alphas=DEFAULT_ALPHAS,
                     n_draws: int = 1000, seed: int = 0, delta_r2: bool = True, progress: bool = True):
    """TRF per feature set (plus the acoustic baseline and set+acoustic for delta R^2).

    Returns ``(summary, layers, kernels)``: the summary and layer tables (see :mod:`neuro`) and
    ``{set name: kernel [C, F, L]}``. Every set shares one assignment of trials to folds.
    """
    fold_of = assign_folds(len(responses), folds, seed)
    acoustic = [s for s in sets if s.kind == "acoustic"]
    jobs: list[tuple[FeatureSet, list[Block]]] = []
    base: tuple[FeatureSet, list[Block]] | None = (acoustic[0], [acoustic[0].block]) if acoustic else None
    if len(acoustic) > 1:  # the baseline is all acoustic sets together, fitted first
        joined = acoustic[0]
        for extra in acoustic[1:]:
            joined = _combined(joined, extra, ACOUSTIC)
        joined.kind = "acoustic"
        base = (joined, [a.block for a in acoustic])
        jobs.append(base)
    jobs += [(s, [s.block]) for s in sets]

    def trf(fs: FeatureSet, blocks: list[Block], refit: bool = True, draws: int = 0, grid=alphas):
        return fit_trf(fs.trials, responses, sfreq, tmin=tmin, tmax=tmax, alphas=grid, blocks=blocks,
                       fold_of_trial=fold_of, refit=refit, n_draws=draws, seed=seed)

    rows, layer_rows, kernels, r_of = [], [], {}, {}
    for fs, blocks in tqdm(jobs, desc="TRF per feature set", disable=not progress):
        res = trf(fs, blocks, draws=n_draws)
        r = res.r
        p = res.p if res.p is not None else np.full(len(ch_names), np.nan)  # n_draws=0: no null
        if base is not None and fs is base[0]:
            base_res = res
        kernels[fs.name], r_of[fs.name] = res.kernel, r
        best = res.lags_s[res.best_lag_index()]
        for c, ch in enumerate(ch_names):
            rows.append({"feature": fs.name, "kind": fs.kind, "channel": ch, "r": r[c],
                         "r_cv_mean": res.r_folds[:, c].mean(), "best_lag_s": best[c], "p": p[c]})
        d_r2 = np.full(len(ch_names), np.nan)
        if delta_r2 and base is not None and fs.kind in ("layer", "sae"):
            # variance beyond the baseline: R^2 of (acoustic + this set) minus R^2 of acoustic alone; the
            # joint model's alpha is the geometric mean of the two sets' (its inner CV would cost 4 more
            # eigendecompositions of a Gram twice the size per fold)
            joint = np.sqrt(_alpha_rel(alphas, res) * _alpha_rel(alphas, base_res))
            both = trf(_combined(base[0], fs, f"{ACOUSTIC}+{fs.name}"), base[1] + blocks, refit=False, grid=[joint])
            d_r2 = _r2(both.r) - _r2(r_of[base[0].name])
        layer_rows.append({"feature": fs.name, "kind": fs.kind, "hook": fs.hook, "width": fs.width,
                           "r_mean": float(r.mean()), "r_sem": float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0,
                           "r_max": float(r.max()), "best_channel": ch_names[int(np.argmax(r))],
                           "delta_r2_mean": float(np.nanmean(d_r2)) if np.isfinite(d_r2).any() else np.nan,
                           "alpha_rel": _alpha_rel(alphas, res)})
    summary = pd.DataFrame(rows)
    reject, p_fdr = fdr(summary["p"].to_numpy())  # NaN p (no null drawn) stays NaN, never significant
    summary["p_fdr"], summary["significant"] = p_fdr, reject
    layers = pd.DataFrame(layer_rows)
    layers["n_significant"] = [int(summary.loc[summary["feature"] == f, "significant"].sum()) for f in layers["feature"]]
    layers["order"] = np.arange(len(layers))  # acoustic baselines first, then model sets in hook order
    return summary, layers, kernels


def feature_correlations(sets: Sequence[FeatureSet], responses: Sequence[np.ndarray], sfreq: float,
                         ch_names: Sequence[str], *, tmin: float = 0.0, tmax: float = 0.5, n_draws: int = 1000,
                         seed: int = 0) -> pd.DataFrame:
    """Per (feature, channel) lagged correlation (AudioSAE style) with circular-shift p and FDR
    across all features x channels."""
    lags = lag_samples(tmin, tmax, sfreq)
    min_shift = max(int(round(sfreq)), int(np.abs(lags).max()) + 1)
    rows = []
    for fs in sets:
        res = lagged_correlation(fs.trials, responses, lags, n_draws=n_draws, min_shift=min_shift, seed=seed)
        for k, col in enumerate(fs.columns):
            for c, ch in enumerate(ch_names):
                rows.append({"feature_set": fs.name, "feature": col, "channel": ch, "r": res["best_r"][k, c],
                             "best_lag_s": lags[res["lag_index"][k, c]] / sfreq, "p": res["p"][k, c]})
    df = pd.DataFrame(rows, columns=["feature_set", "feature", "channel", "r", "best_lag_s", "p"])
    if n_draws == 0:
        df["p"] = np.nan  # no null drawn
    reject, p_fdr = fdr(df["p"].to_numpy())
    df["p_fdr"], df["significant"] = p_fdr, reject
    return df


def fit(recording: str | os.PathLike | Recording, corpus: Corpus, out: str | os.PathLike, *,
        model: str | None = None, hooks: Sequence[str] = (), sae: str | os.PathLike | None = None,
        cache=None, cache_root: str | os.PathLike | None = None, channels: Sequence[str] | None = None,
        sfreq: float | None = None, tmin: float = -0.1, tmax: float = 0.5, corr_tmax: float = 0.5,
        folds: int = 5, alphas=DEFAULT_ALPHAS, n_components: int = 16, sae_features: int = 64,
        n_draws: int = 1000, seed: int = 0, delta_r2: bool = True, progress: bool = True,
        command: str | None = None) -> NeuroResult:
    """Run every analysis of a recording and write the run folder ``out`` (see :mod:`neuro`)."""
    t0 = time.time()
    out = Path(out)
    rec = recording if isinstance(recording, Recording) else read_recording(recording, corpus, sfreq=sfreq)
    rec = rec.pick(channels)
    lags = lag_samples(tmin, tmax, rec.sfreq)
    need = 2 * len(lags) + max(0, -int(lags[0])) + max(0, int(lags[-1])) + 1
    short = [t.clip_id for t in rec.trials if len(t.data) < need]
    if short:  # a trial shorter than a few lag windows cannot be fitted: say which, fit the rest
        log.warning("%s: skipping trials shorter than %d samples (%.2f s): %s", rec.source, need, need / rec.sfreq, short)
        rec.trials = [t for t in rec.trials if len(t.data) >= need]
    trials = [(t.clip_id, len(t.data)) for t in rec.trials]
    responses = _centre([t.data for t in rec.trials])
    sets = acoustic_sets(corpus, trials, rec.sfreq, progress=progress)
    resolved: list[str] = []
    sae_dicts = {}
    if sae is not None:
        from workbench.features import load_feature_dictionaries

        sae_dicts = load_feature_dictionaries(sae)
    if hooks or sae_dicts:
        if cache is None and model is None:
            raise ValueError("--hooks / --sae need --model (or --cache)")
        available = cache.hooks if cache is not None else _model_hooks(model)
        if hooks:
            resolved = resolve_hooks(hooks, available, what=f"{model or cache.root} (--hooks)", allow_all=False)
        sets += model_sets(model, corpus, trials, rec.sfreq, resolved, cache=cache,
                           cache_root=cache_root or default_cache_root(out), sae=sae_dicts,
                           n_components=n_components, sae_features=sae_features, progress=progress)
    for fs in sets:  # trial-level offsets of a feature are not tracking (and bias CV r negative)
        fs.trials = _centre(fs.trials, scale=False)
    summary, layers, kernels = fit_feature_sets(sets, responses, rec.sfreq, rec.ch_names, tmin=tmin, tmax=tmax,
                                                folds=folds, alphas=alphas, n_draws=n_draws, seed=seed,
                                                delta_r2=delta_r2, progress=progress)
    per_feature = [s for s in sets if s.name == "envelope" or s.kind == "sae"]
    features = feature_correlations(per_feature, responses, rec.sfreq, rec.ch_names, tmin=0.0, tmax=corr_tmax,
                                    n_draws=n_draws, seed=seed)
    meta = _write(out, rec, summary, layers, features, kernels, sets, dict(
        recording=rec.source, data=data_label(rec), description=rec.description, model=model, hooks=resolved,
        sae=str(sae) if sae else None, sae_hooks=sorted(sae_dicts), cache=str(cache.root) if cache is not None else None,
        sfreq=rec.sfreq, tmin=tmin, tmax=tmax, corr_tmin=0.0, corr_tmax=corr_tmax, folds=folds,
        alphas_relative=[float(a) for a in alphas], n_components=n_components, n_draws=n_draws, seed=seed,
        channels=rec.ch_names, trials=[t.clip_id for t in rec.trials], n_samples=int(sum(n for _, n in trials)),
        command=command or " ".join(sys.argv), seconds=None))
    meta["seconds"] = round(time.time() - t0, 1)
    outputs.write_meta(meta, out / "neuro.json")
    return NeuroResult(out, summary, layers, features, meta)


def _centre(trials: Sequence[np.ndarray], scale: bool = True) -> list[np.ndarray]:
    """Each trial minus its own mean; with ``scale``, divided by the std over all trials (per column)."""
    out = [np.asarray(t, dtype=np.float64) - np.asarray(t, dtype=np.float64).mean(0) for t in trials]
    if scale:
        std = np.sqrt(sum((t * t).sum(0) for t in out) / sum(len(t) for t in out))
        out = [t / np.where(std > 0, std, 1.0) for t in out]
    return out


def _model_hooks(model: str) -> list[str]:
    from workbench.models import load

    return load(model).hook_points


def _write(out: Path, rec: Recording, summary, layers, features, kernels, sets, meta: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels").mkdir(exist_ok=True)
    outputs.write_table(summary, out / "summary.csv")
    outputs.write_table(layers, out / "layers.csv")
    outputs.write_table(features, out / "features.csv")
    outputs.write_layers_html(layers, out / "layers.html", f"{meta['data']}: {Path(rec.source).name}")
    set_info = {s.name: {"kind": s.kind, "hook": s.hook, "width": s.width, "columns": s.columns} for s in sets}
    files = {"summary": "summary.csv", "layers": "layers.csv", "layers_html": "layers.html",
             "features": "features.csv", "kernels": {}, "topomaps": {}}
    for name, k in kernels.items():
        if k.size:
            files["kernels"][name] = f"kernels/{outputs.safe_name(name)}.npy"
            outputs.write_kernel(k, out / files["kernels"][name])
    if rec.has_montage:
        (out / "topomaps").mkdir(exist_ok=True)
        for name in layers["feature"]:
            r = summary.loc[summary["feature"] == name, "r"].to_numpy()
            files["topomaps"][name] = f"topomaps/{outputs.safe_name(name)}.png"
            outputs.write_topomap(r, rec.info, out / files["topomaps"][name], f"{name}\nprediction r")
    meta.update(feature_sets=set_info, files=files, kernel_lags_s=(lag_samples(meta["tmin"], meta["tmax"], rec.sfreq)
                                                                   / rec.sfreq).tolist(), has_montage=rec.has_montage)
    outputs.write_meta(meta, out / "neuro.json")
    return meta
