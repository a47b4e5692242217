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

from neuro.bad_samples import fix_recording
from neuro.naplib_sample import NAPLIB_DESCRIPTION
from neuro.pipeline import feature_correlations, run_subjects, write_subject
from neuro.recording import Recording, read_recording
from neuro.sets import ACOUSTIC, fit_sets, subject_tables
from neuro.stimulus import FeatureSet
from neuro.trf import DEFAULT_ALPHAS
from workbench.corpus.types import Corpus

log = logging.getLogger(__name__)

__all__ = ["NeuroResult", "fit", "fit_feature_sets", "feature_correlations", "default_cache_root", "data_label",
           "load_recording", "ACOUSTIC"]


@dataclass
class NeuroResult:
    out: Path
    summary: pd.DataFrame
    layers: pd.DataFrame
    features: pd.DataFrame
    meta: dict
    partition: pd.DataFrame | None = None
    tests: pd.DataFrame | None = None
    ceiling: pd.DataFrame | None = None


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


def fit_feature_sets(sets: Sequence[FeatureSet], responses: Sequence[np.ndarray], sfreq: float, ch_names: Sequence[str],
                     *, tmin: float = -0.1, tmax: float = 0.5, folds: int = 5, alphas=DEFAULT_ALPHAS,
                     n_draws: int = 1000, seed: int = 0, delta_r2: bool = True, progress: bool = True):
    """TRF per feature set (plus the acoustic baseline, and the banded joint model acoustic + set
    whose unique R^2 is ``delta_r2_mean``), in any order of ``sets``.

    Returns ``(summary, layers, kernels)``: the summary and layer tables (see :mod:`neuro`) and
    ``{set name: kernel [C, F, L]}``. Every set shares one assignment of trials to folds.
    """
    fits = fit_sets(sets, responses, sfreq, tmin=tmin, tmax=tmax, folds=folds, alphas=alphas, n_draws=n_draws,
                    seed=seed, joint=delta_r2, progress=progress)
    summary, layers, _, _ = subject_tables(fits, slice(None), ch_names, alphas)
    return summary, layers, {name: f.res.kernel for name, f in fits.items()}


def load_recording(recording, corpus: Corpus, *, sfreq: float | None = None, channels: Sequence[str] | None = None,
                   bad_samples: str = "error") -> Recording:
    """Read (or take) a recording, keep ``channels``, and apply the ``bad_samples`` rule."""
    rec = recording if isinstance(recording, Recording) else read_recording(recording, corpus, sfreq=sfreq,
                                                                            bad_samples=bad_samples)
    return fix_recording(rec.pick(channels), bad_samples)


def load_saes(sae) -> dict:
    if sae is None:
        return {}
    from workbench.features import load_feature_dictionaries

    return load_feature_dictionaries(sae)


def fit(recording: str | os.PathLike | Recording, corpus: Corpus, out: str | os.PathLike, *,
        model: str | None = None, hooks: Sequence[str] = (), sae: str | os.PathLike | None = None,
        cache=None, cache_root: str | os.PathLike | None = None, channels: Sequence[str] | None = None,
        sfreq: float | None = None, tmin: float = -0.1, tmax: float = 0.5, corr_tmax: float = 0.5,
        folds: int = 5, alphas=DEFAULT_ALPHAS, n_components: int = 16, sae_features: int = 64,
        n_draws: int = 1000, seed: int = 0, delta_r2: bool = True, bad_samples: str = "error",
        progress: bool = True, command: str | None = None) -> NeuroResult:
    """Run every analysis of a recording and write the run folder ``out`` (see :mod:`neuro`)."""
    t0 = time.time()
    out = Path(out)
    rec = load_recording(recording, corpus, sfreq=sfreq, channels=channels, bad_samples=bad_samples)
    sae_dicts = load_saes(sae)
    res = run_subjects({"sub": rec}, corpus, model=model, hooks=hooks, sae_dicts=sae_dicts, cache=cache,
                       cache_root=cache_root or default_cache_root(out), tmin=tmin, tmax=tmax, corr_tmax=corr_tmax,
                       folds=folds, alphas=alphas, n_components=n_components, sae_features=sae_features,
                       n_draws=n_draws, seed=seed, joint=delta_r2, group_of=_group_of(corpus),
                       progress=progress)["sub"]
    meta = run_meta(res.rec, dict(model=model, hooks=res.hooks, sae=str(sae) if sae else None, sae_hooks=sorted(sae_dicts),
                                  cache=str(cache.root) if cache is not None else None, tmin=tmin, tmax=tmax,
                                  corr_tmax=corr_tmax, folds=folds, alphas=alphas, n_components=n_components,
                                  n_draws=n_draws, seed=seed, command=command))
    meta = write_subject(out, res, meta)
    meta["seconds"] = round(time.time() - t0, 1)
    from neuro import outputs

    outputs.write_meta(meta, out / "neuro.json")
    return NeuroResult(out, res.summary, res.layers, res.features, meta, res.partition, res.tests, res.ceiling)


def run_meta(rec: Recording, opts: dict) -> dict:
    """The ``neuro.json`` fields a run's options and recording give (files are added when written)."""
    return dict(recording=rec.source, data=data_label(rec), description=rec.description, model=opts.get("model"),
                hooks=opts.get("hooks", []), sae=opts.get("sae"), sae_hooks=opts.get("sae_hooks", []),
                cache=opts.get("cache"), sfreq=rec.sfreq, tmin=opts["tmin"], tmax=opts["tmax"], corr_tmin=0.0,
                corr_tmax=opts["corr_tmax"], folds=opts["folds"],
                alphas_relative=[float(a) for a in opts["alphas"]], n_components=opts["n_components"],
                n_draws=opts["n_draws"], seed=opts["seed"], command=opts.get("command") or " ".join(sys.argv),
                seconds=None)


def _group_of(corpus: Corpus):
    """Trials are grouped into folds by the clip's group (``workbench.conventions.group_of`` when
    present: source, then speaker, then clip), else by clip id."""
    try:
        from workbench.conventions import group_of
    except ImportError:
        return None
    clips = {c.id: c for c in corpus}
    return lambda cid: group_of(clips[cid]) if cid in clips else cid
