"""One or several subjects through every analysis: features once per trial list, fits once per
stack of subjects, then each subject's tables and files.

Subjects that heard the same trials (same clips, lengths and rate) are stacked channel-wise into
one fit (:func:`neuro.sets.fit_sets`): the stimulus side (features, transforms, Grams, every
fold's eigendecomposition) is computed once for all of them. :func:`run_subjects` returns each
subject's :class:`SubjectResult`; :func:`write_subject` writes the layout documented in
:mod:`neuro`.

Example
-------
>>> results = run_subjects({"sub-01": rec1, "sub-02": rec2}, corpus, cache_root="ws/caches")  # doctest: +SKIP
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from neuro import outputs
from neuro.ceiling import ceiling_from_trials, r_ceiling
from neuro.lagged import lag_samples
from neuro.recording import Recording
from neuro.sets import SetFit, fit_sets, subject_tables
from neuro.stats import fdr, lagged_correlation
from neuro.stimulus import FeatureSet, acoustic_sets, model_sets
from neuro.trf import DEFAULT_ALPHAS

log = logging.getLogger(__name__)

__all__ = ["SubjectResult", "run_subjects", "write_subject", "feature_correlations", "centre", "MIN_SFREQ"]

#: below this rate the TRF's lag window holds too few samples (and audio features cannot be resampled)
MIN_SFREQ = 16.0


@dataclass
class SubjectResult:
    subject: str
    rec: Recording
    summary: pd.DataFrame
    layers: pd.DataFrame
    partition: pd.DataFrame
    tests: pd.DataFrame
    features: pd.DataFrame
    kernels: dict[str, np.ndarray]
    sets: list[FeatureSet]
    ceiling: pd.DataFrame | None = None
    responses: list[np.ndarray] = field(default_factory=list, repr=False)
    hooks: list[str] = field(default_factory=list)
    fold_groups: str = "clip"


def centre(trials: Sequence[np.ndarray], scale: bool = True) -> list[np.ndarray]:
    """Each trial minus its own mean; with ``scale``, divided by the std over all trials (per column)."""
    out = [np.asarray(t, dtype=np.float64) - np.asarray(t, dtype=np.float64).mean(0) for t in trials]
    if scale:
        std = np.sqrt(sum((t * t).sum(0) for t in out) / sum(len(t) for t in out))
        out = [t / np.where(std > 0, std, 1.0) for t in out]
    return out


def check_rate(rec: Recording, tmin: float, tmax: float) -> np.ndarray:
    """The TRF lags of ``rec``; a rate too low for them fails naming the file and the rate."""
    lags = lag_samples(tmin, tmax, rec.sfreq)
    if rec.sfreq < MIN_SFREQ or len(lags) < 3:
        raise ValueError(f"{rec.source}: sampled at {rec.sfreq:g} Hz, which leaves {len(lags)} lag(s) in "
                         f"{tmin:g}..{tmax:g} s; a TRF needs at least {MIN_SFREQ:g} Hz (resample with --sfreq, "
                         "e.g. 100)")
    return lags


def _drop_short(rec: Recording, lags: np.ndarray) -> None:
    need = 2 * len(lags) + max(0, -int(lags[0])) + max(0, int(lags[-1])) + 1
    short = [t.clip_id for t in rec.trials if len(t.data) < need]
    if short:  # a trial shorter than a few lag windows cannot be fitted: say which, fit the rest
        log.warning("%s: skipping trials shorter than %d samples (%.2f s): %s", rec.source, need, need / rec.sfreq, short)
        rec.trials = [t for t in rec.trials if len(t.data) >= need]


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


def _resolve_hooks(hooks, cache, model, cache_root=None) -> list[str]:
    if not hooks:
        return []
    if cache is None and model is None:
        raise ValueError("--hooks / --sae need --model (or --cache)")
    from workbench.conventions import resolve_hooks

    available = cache.hooks if cache is not None else model_hook_points(model, cache_root)
    return resolve_hooks(hooks, available, what=f"{model or cache.root} (--hooks)", allow_all=False)


def model_hook_points(model: str, cache_root=None) -> list[str]:
    """The hook points of ``model``; listed once by loading it, then read from
    ``CACHE_ROOT/neuro-hooks-MODEL.json`` (a rerun whose features are cached then never loads the
    model: ~5 s for whisper-tiny.en). The memo is keyed by the spec and, for a local model folder,
    its ``config.json``'s modification time."""
    from workbench.atomic import read_json, write_json
    from workbench.models import load

    from neuro.outputs import safe_name

    cfg = Path(model) / "config.json"
    stamp = cfg.stat().st_mtime_ns if cfg.is_file() else None
    memo = Path(cache_root) / f"neuro-hooks-{safe_name(Path(model).name)}.json" if cache_root is not None else None
    if memo is not None and memo.is_file():
        try:
            doc = read_json(memo)
            if doc.get("model") == str(model) and doc.get("config_mtime_ns") == stamp and doc.get("hook_points"):
                return list(doc["hook_points"])
        except (ValueError, OSError):
            pass  # an unreadable memo is rebuilt below
    points = list(load(model).hook_points)
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            write_json(memo, {"model": str(model), "config_mtime_ns": stamp, "hook_points": points})
        except OSError as e:  # a read-only cache folder only costs the next run a model load
            log.warning("could not write %s: %s", memo, e)
    return points


def _signature(rec: Recording) -> tuple:
    return (rec.sfreq, tuple((t.clip_id, len(t.data)) for t in rec.trials))


def run_subjects(recs: Mapping[str, Recording], corpus, *, model: str | None = None, hooks: Sequence[str] = (),
                 sae_dicts: Mapping | None = None, cache=None, cache_root=None, tmin: float = -0.1, tmax: float = 0.5,
                 corr_tmax: float = 0.5, folds: int = 5, alphas=DEFAULT_ALPHAS, n_components: int = 16,
                 sae_features: int = 64, n_draws: int = 1000, seed: int = 0, joint: bool = True,
                 group_of=None, progress: bool = True) -> dict[str, SubjectResult]:
    """Every analysis of every subject (see module docstring); ``group_of(clip_id)`` groups trials
    into folds (default: by clip, so a repeated clip never sits on both sides)."""
    for rec in recs.values():
        _drop_short(rec, check_rate(rec, tmin, tmax))
    sae_dicts = dict(sae_dicts or {})
    if sae_dicts and cache is None and model is None:
        raise ValueError("--sae needs --model (or --cache)")
    resolved = _resolve_hooks(hooks, cache, model, cache_root)
    stacks: dict[tuple, list[str]] = {}
    for sub, rec in recs.items():
        stacks.setdefault(_signature(rec), []).append(sub)
    out: dict[str, SubjectResult] = {}
    for (sfreq, trials), subs in stacks.items():
        trials = list(trials)
        per_sub = {s: centre([t.data for t in recs[s].trials]) for s in subs}
        responses = [np.concatenate([per_sub[s][i] for s in subs], axis=1) for i in range(len(trials))]
        with ThreadPoolExecutor(1) as side:  # the acoustic features beside the model's (both mostly numpy/scipy)
            acoustic = side.submit(acoustic_sets, corpus, trials, sfreq, progress=progress)
            models = (model_sets(model, corpus, trials, sfreq, resolved, cache=cache, cache_root=cache_root,
                                 sae=sae_dicts, n_components=n_components, sae_features=sae_features,
                                 progress=progress) if resolved or sae_dicts else [])
            sets = acoustic.result() + models
        for fs in sets:  # trial-level offsets of a feature are not tracking (and bias CV r negative)
            fs.trials = centre(fs.trials, scale=False)
        groups, how = [cid for cid, _ in trials], "clip"
        if group_of is not None:
            keys = [group_of(cid) for cid, _ in trials]
            if len(set(keys)) >= 3:
                groups, how = keys, "workbench.conventions.group_of (source, then speaker, then clip)"
            else:
                log.warning("trials fall into %d group(s) by source/speaker: folds group them by clip instead",
                            len(set(keys)))
        per_feature = [s for s in sets if s.name == "envelope" or s.kind == "sae"]
        with ThreadPoolExecutor(1) as side:  # the per-feature correlations run beside the TRF fits
            corr = side.submit(feature_correlations, per_feature, responses, sfreq,
                               [f"{i}" for i in range(responses[0].shape[1])], tmin=0.0, tmax=corr_tmax,
                               n_draws=n_draws, seed=seed)
            fits = fit_sets(sets, responses, sfreq, tmin=tmin, tmax=tmax, folds=folds, alphas=alphas,
                            n_draws=n_draws, seed=seed, joint=joint, groups=groups, progress=progress)
            corr = corr.result()
        off = 0
        for s in subs:
            rec = recs[s]
            idx = slice(off, off + len(rec.ch_names))
            out[s] = _subject(s, rec, fits, idx, corr, off, sets, per_sub[s], alphas)
            out[s].hooks, out[s].fold_groups = resolved, how
            off += len(rec.ch_names)
    return out


def _subject(sub: str, rec: Recording, fits: dict[str, SetFit], idx: slice, corr: pd.DataFrame, off: int,
             sets, responses, alphas) -> SubjectResult:
    summary, layers, part, tests = subject_tables(fits, idx, rec.ch_names, alphas)
    cols = corr["channel"].astype(int)
    features = corr[(cols >= idx.start) & (cols < idx.stop)].copy()
    features["channel"] = [rec.ch_names[int(c) - off] for c in features["channel"]]
    reject, p_fdr = fdr(features["p"].to_numpy())  # this subject's features x channels
    features["p_fdr"], features["significant"] = p_fdr, reject
    features = features.reset_index(drop=True)
    kernels = {name: f.res.kernel[idx] for name, f in fits.items()}
    ceiling = None
    got = ceiling_from_trials([t.clip_id for t in rec.trials], responses)
    if got is not None:
        ev, n_rep = got
        ceiling = pd.DataFrame({"channel": rec.ch_names, "explainable_variance": ev, "r_ceiling": r_ceiling(ev),
                                "n_repeats": n_rep, "source": "repeated clips within the subject"})
        rc = ceiling.set_index("channel")["r_ceiling"]
        with np.errstate(invalid="ignore", divide="ignore"):
            summary["r_norm"] = summary["r"] / summary["channel"].map(rc).where(lambda v: v > 0)
    return SubjectResult(sub, rec, summary, layers, part, tests, features, kernels, sets, ceiling, responses)


def write_subject(out: Path, res: SubjectResult, meta: dict[str, Any]) -> dict:
    """Write one subject's run folder (layout in :mod:`neuro`); returns the completed ``neuro.json``."""
    rec = res.rec
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels").mkdir(exist_ok=True)
    files: dict[str, Any] = {"summary": "summary.csv", "layers": "layers.csv", "layers_html": "layers.html",
                             "features": "features.csv", "partition": "partition.csv", "layer_tests": "layer_tests.csv",
                             "kernels": {}, "topomaps": {}}
    outputs.write_table(res.summary, out / "summary.csv")
    outputs.write_table(res.layers, out / "layers.csv")
    outputs.write_table(res.features, out / "features.csv")
    outputs.write_table(res.partition, out / "partition.csv")
    outputs.write_table(res.tests, out / "layer_tests.csv")
    if res.ceiling is not None:
        files["ceiling"] = "ceiling.csv"
        outputs.write_table(res.ceiling, out / "ceiling.csv")
    outputs.write_layers_html(res.layers, out / "layers.html", f"{meta['data']}: {Path(rec.source).name}")
    for name, k in res.kernels.items():
        if k.size:
            files["kernels"][name] = f"kernels/{outputs.safe_name(name)}.npy"
            outputs.write_kernel(k, out / files["kernels"][name])
    if rec.has_montage:
        (out / "topomaps").mkdir(exist_ok=True)
        for name in res.layers["feature"]:
            r = res.summary.loc[res.summary["feature"] == name, "r"].to_numpy()
            files["topomaps"][name] = f"topomaps/{outputs.safe_name(name)}.png"
            outputs.write_topomap(r, rec.info, out / files["topomaps"][name], f"{name}\nprediction r")
    set_info = {s.name: {"kind": s.kind, "hook": s.hook, "width": s.width, "columns": s.columns} for s in res.sets}
    meta = dict(meta, feature_sets=set_info, files=files, has_montage=rec.has_montage, channels=rec.ch_names,
                trials=[t.clip_id for t in rec.trials], n_samples=int(sum(len(t.data) for t in rec.trials)),
                sfreq=rec.sfreq, bad_samples=rec.meta.get("bad_samples"), fold_groups=res.fold_groups,
                kernel_lags_s=(lag_samples(meta["tmin"], meta["tmax"], rec.sfreq) / rec.sfreq).tolist(),
                statistics=_statistics(meta))
    outputs.write_meta(meta, out / "neuro.json")
    return meta


def _statistics(meta: dict) -> dict:
    n = int(meta.get("n_draws") or 0)
    return {"n_draws": n, "min_p_perm": 1.0 / (n + 1) if n else None,
            "null": "circular shifts of the stimulus within trials, cross-validated model refitted per draw",
            "p": "one-sided; Gaussian tail of the null draws (Student-t with draws - 1 df, the null's mean and sd "
                 "estimated from the draws), so it can go below 1 / (draws + 1); p_perm: the rank p",
            "correction": "Benjamini-Hochberg over channels within each feature set (summary.csv) and over "
                          "features x channels (features.csv)",
            "layer_curve": "r_mean: mean r over all channels; r_responsive: mean r over the n_responsive channels "
                           "significant (p_fdr < 0.05) for at least one feature set (the same channels for every set)",
            "alpha": "ridge penalty chosen per channel by inner cross-validation (leave one training fold out)",
            "layer_interval": "r_sem: standard error across trials of each trial's channel-mean r",
            "layer_tests": "paired sign-flip across trials (layer_tests.csv), two-sided, BH over pairs"}
