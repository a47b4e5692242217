"""Stimulus feature sets at the neural rate, one array per trial.

- acoustic baselines (always): ``envelope`` ``[n, 1]`` and ``spectrogram`` ``[n, 16]`` (:mod:`neuro.acoustic`);
- model layers: any hook, read from an activation cache (``workbench.cache``) or computed once by
  running the model into a cache under ``cache_root`` keyed by model, hooks and clips, so a second
  run with other channels or lags reads the cache instead of running the model; frames are
  resampled from the hook's frame rate to the neural rate (``resample_poly``, each frame placed at
  its centre as the cache's frame table records it, ``workbench.conventions``); the TRF reduces each layer by PCA fitted on training trials only;
- SAE features: a saved SAE read through ``workbench.features`` encodes its hook; the most active
  features (by mean activation over the stimuli, never by the response) form a set: its TRF uses
  their PCA (training trials only), the per-feature correlation each feature.

Example
-------
>>> sets = acoustic_sets(corpus, [("clip1", 500), ("clip2", 620)], sfreq=100)   # doctest: +SKIP
>>> sets = sets + model_sets("whisper-tiny.en", corpus, trials, 100,
...                          ["encoder.blocks.1.hook_resid_post"], cache_root="work/caches")  # doctest: +SKIP
>>> [s.name for s in sets], sets[0].trials[0].shape                             # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from neuro import acoustic
from neuro.trf import Block
from workbench.audio import load_audio
from workbench.corpus.types import Corpus

log = logging.getLogger(__name__)

__all__ = ["FeatureSet", "acoustic_sets", "model_sets", "clip_audio", "open_or_build_cache"]

AUDIO_SR = 16000


@dataclass
class FeatureSet:
    name: str
    kind: str  # "acoustic" | "layer" | "sae"
    trials: list[np.ndarray]  # [n_i, D] per trial, at the neural rate
    block: Block
    hook: str | None = None
    columns: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return int(self.trials[0].shape[1])


def clip_audio(corpus: Corpus, clip_id: str, sr: int = AUDIO_SR) -> np.ndarray:
    clip = next((c for c in corpus if c.id == clip_id), None)
    if clip is None:
        raise KeyError(f"clip {clip_id!r} is not in corpus {corpus.root}")
    return load_audio(corpus.audio_path(clip), sr=sr)


def acoustic_sets(corpus: Corpus, trials: Sequence[tuple[str, int]], sfreq: float, n_bands: int = 16,
                  progress: bool = True) -> list[FeatureSet]:
    """Envelope and spectrogram per trial ``(clip_id, n_samples)``."""
    env, spec = [], []
    for cid, n in tqdm(trials, desc="acoustic features", disable=not progress, leave=False):
        audio = clip_audio(corpus, cid)
        env.append(acoustic.envelope(audio, AUDIO_SR, sfreq, n_out=n))
        spec.append(acoustic.spectrogram(audio, AUDIO_SR, sfreq, n_bands=n_bands, n_out=n))
    return [FeatureSet("envelope", "acoustic", env, Block(1), columns=["envelope"]),
            FeatureSet("spectrogram", "acoustic", spec, Block(n_bands), columns=[f"band{b}" for b in range(n_bands)])]


def _cache_key(model: str, hooks: Sequence[str], corpus: Corpus) -> str:
    blob = json.dumps([model, sorted(hooks), corpus.fingerprint()], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def open_or_build_cache(model_spec: str, corpus: Corpus, hooks: Sequence[str], cache_root: str | Path,
                        progress: bool = True):
    """An activation cache of ``hooks`` over ``corpus`` under ``cache_root``; runs the model only when
    that cache does not exist yet or is incomplete (``build_cache`` resumes it)."""
    from workbench.cache import ActivationCache, build_cache
    from workbench.models import load

    out = Path(cache_root) / f"neuro-{Path(model_spec).name}-{_cache_key(model_spec, hooks, corpus)}"
    try:
        cache = ActivationCache.open(out)
        if set(hooks) <= set(cache.hooks) and {c.id for c in corpus} <= set(cache.clip_ids) | set(cache.skipped):
            log.info("stimulus features from %s (model not run)", out)
            return cache
    except (FileNotFoundError, RuntimeError):
        pass
    model = load(model_spec)
    return build_cache(model, corpus, list(hooks), out, verbose=progress)


def _first_centres(cache, hook: str) -> dict[str, float]:
    """Per clip, the centre time (s) of its first frame of ``hook`` from the frame table."""
    frames = cache.frames(hook)
    first = frames.groupby("clip_id", sort=False).head(1)
    return {cid: float((a + b) / 2) for cid, a, b in zip(first["clip_id"], first["start_s"], first["end_s"])}


def _per_clip(cache, hook: str, clip_ids: Sequence[str]) -> dict[str, np.ndarray]:
    frames = cache.frames(hook)
    rows = {cid: np.asarray(idx, dtype=np.int64) for cid, idx in frames.groupby("clip_id").indices.items()}
    missing = [c for c in clip_ids if c not in rows]
    if missing:
        raise KeyError(f"cache {cache.root} has no frames of {hook!r} for clips {missing[:5]} "
                       f"(skipped: {[cache.skipped.get(c) for c in missing[:3]]})")
    return {cid: cache.load(hook, rows[cid]) for cid in dict.fromkeys(clip_ids)}


def model_sets(model_spec: str | None, corpus: Corpus, trials: Sequence[tuple[str, int]], sfreq: float,
               hooks: Sequence[str], *, cache=None, cache_root: str | Path | None = None, sae=None,
               n_components: int = 16, sae_features: int = 64, progress: bool = True) -> list[FeatureSet]:
    """One PCA-reduced set per hook, plus one set of the top SAE features per SAE in ``sae``
    (``{hook: FeatureDictionary}``). ``cache`` (an ActivationCache) is used as is; otherwise the
    model is run into a cache under ``cache_root``."""
    clip_ids = [cid for cid, _ in trials]
    sae = dict(sae or {})
    needed = list(dict.fromkeys(list(hooks) + list(sae)))
    if not needed:
        return []
    if cache is None:
        if model_spec is None or cache_root is None:
            raise ValueError("model features need an activation cache or a model spec and a cache folder")
        sub = Corpus([c for c in corpus if c.id in set(clip_ids)], root=corpus.root)
        cache = open_or_build_cache(model_spec, sub, needed, cache_root, progress=progress)
    missing = [h for h in needed if h not in cache.hooks]
    if missing:
        raise KeyError(f"hooks {missing} are not in cache {cache.root}; cached: {cache.hooks}")
    def one(hook: str) -> list[FeatureSet]:
        per_clip = _per_clip(cache, hook, clip_ids)
        rate = cache.frame_rate(hook)
        t0 = _first_centres(cache, hook)
        got = []
        if hook in hooks:
            xs = [acoustic.to_rate(per_clip[cid], rate, sfreq, n, t0=t0[cid]) for cid, n in trials]
            got.append(FeatureSet(hook, "layer", xs, Block(xs[0].shape[1], "pca", n_components), hook=hook,
                                  columns=[f"pc{i}" for i in range(min(n_components, xs[0].shape[1]))]))
        if hook in sae:
            fd = sae[hook]
            codes = {cid: fd.encode_numpy(per_clip[cid]) for cid in per_clip}
            mean_act = np.concatenate(list(codes.values())).mean(0)
            top = np.argsort(mean_act)[::-1][:sae_features]
            top = top[mean_act[top] > 0]
            if len(top) == 0:
                log.warning("SAE %s: no feature is active on these stimuli; skipped", fd.path)
                return got
            xs = [acoustic.to_rate(codes[cid][:, top], rate, sfreq, n, t0=t0[cid]) for cid, n in trials]
            got.append(FeatureSet(f"sae:{hook}", "sae", xs, Block(len(top), "pca", n_components), hook=hook,
                                  columns=[f"f{int(i)}" for i in top]))
        return got

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex:  # hooks read and resampled two at a time (scipy/numpy release the GIL)
        done = list(tqdm(ex.map(one, needed), total=len(needed), desc="model features", disable=not progress,
                         leave=False))
    return [fs for got in done for fs in got]
