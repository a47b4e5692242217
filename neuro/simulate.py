"""Simulated EEG with a planted stimulus-response kernel, written as an MNE FIF recording.

:func:`simulate_eeg` lays a corpus's clips end to end with gaps, draws independent AR(1) (1/f-like)
noise on 64 BioSemi channels (standard montage, so topomaps work), and adds to the ``planted``
channels the stimulus convolved with a Gaussian kernel peaking at ``lag_s``, scaled so that each
planted channel correlates ``r`` with its driver. The stimulus is the broadband envelope, or any
per-clip feature array (a model layer: then its projection on a seeded random unit vector).
Annotations: one per clip, description = clip id. ``raw.info["description"]`` records what was
planted (``"simulated: ..."``), and the FIF's JSON sidecar (``*.json``) the same as data.

Example
-------
>>> path = simulate_eeg(corpus, "work/sim/sub-sim_eeg.fif", planted=("Cz", "CPz"), lag_s=0.15)  # doctest: +SKIP
>>> workbench neuro fit --recording work/sim/sub-sim_eeg.fif --corpus CORPUS --out WS/neuro/sim  # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import signal

from neuro import acoustic
from neuro.recording import clip_duration
from neuro.stimulus import AUDIO_SR, clip_audio
from workbench.atomic import atomic_path, write_json
from workbench.corpus.types import Corpus

__all__ = ["simulate_eeg", "planted_driver", "DEFAULT_PLANTED", "MONTAGE"]

MONTAGE = "biosemi64"
DEFAULT_PLANTED = ("Cz", "CPz", "FCz", "C1", "C2")


def _kernel(sfreq: float, lag_s: float, width_s: float) -> tuple[np.ndarray, int]:
    """Gaussian kernel samples and the offset of its first sample (may be negative)."""
    lo = int(np.floor((lag_s - 4 * width_s) * sfreq))
    hi = int(np.ceil((lag_s + 4 * width_s) * sfreq))
    t = np.arange(lo, hi + 1) / sfreq
    return np.exp(-0.5 * ((t - lag_s) / width_s) ** 2), lo


def planted_driver(x: np.ndarray, sfreq: float, lag_s: float, width_s: float = 0.02) -> np.ndarray:
    """``x [n]`` convolved with the kernel: ``d(t) = sum_k k(k) x(t - k)`` within the clip."""
    k, lo = _kernel(sfreq, lag_s, width_s)
    full = np.convolve(x, k)  # full[t] = sum_j k[j] x(t - j), lag of k[j] = lo + j
    src = np.arange(len(x)) - lo
    valid = (src >= 0) & (src < len(full))
    out = np.zeros(len(x))
    out[valid] = full[src[valid]]
    return out


def _ar1(rng: np.random.Generator, n: int, c: int, phi: float = 0.9) -> np.ndarray:
    e = rng.normal(size=(n, c))
    x = signal.lfilter([1.0], [1.0, -phi], e, axis=0)
    return x / x.std(0)


def simulate_eeg(corpus: Corpus, out: str | os.PathLike, *, clips: Sequence[str] | None = None,
                 source: str | Mapping[str, np.ndarray] = "envelope", sfreq: float = 100.0,
                 planted: Sequence[str] = DEFAULT_PLANTED, lag_s: float = 0.15, width_s: float = 0.02,
                 r: float = 0.1, gap_s: float = 1.0, seed: int = 0, plant_seed: int | None = None) -> Path:
    """Write a 64-channel simulated EEG FIF for ``clips`` of ``corpus`` (all by default); returns its path.

    ``source``: ``"envelope"``, ``"none"`` (no planted signal: a null recording) or ``{clip_id:
    array [n, D] at sfreq}`` (e.g. a layer's features: planted through a random unit projection).
    ``plant_seed`` draws that projection (default: ``seed``), so subjects simulated with different
    ``seed`` and one ``plant_seed`` share the planted response and differ in their noise.
    """
    import mne

    out = Path(out)
    if not out.name.endswith(("raw.fif", "_eeg.fif", "raw.fif.gz", "_eeg.fif.gz")):
        raise ValueError(f"{out}: MNE expects a FIF name ending in _eeg.fif or raw.fif")
    if not 0 <= r < 1:  # the planted gain is r / sqrt(1 - r^2): NaN/inf channels otherwise
        raise ValueError(f"r (--r) is the planted channels' correlation with their driver: it must be in [0, 1), got {r}")
    rng = np.random.default_rng(seed)
    plant_rng = rng if plant_seed is None else np.random.default_rng(plant_seed)
    montage = mne.channels.make_standard_montage(MONTAGE)
    names = list(montage.ch_names)
    bad = [c for c in planted if c not in names]
    if bad:
        raise ValueError(f"planted channels {bad} are not {MONTAGE} channels: {names}")
    ids = list(clips) if clips is not None else [c.id for c in corpus]
    by_id = {c.id: c for c in corpus}
    proj = None
    segments, onsets, durations = [], [], []
    t = gap_s
    for cid in ids:
        if cid not in by_id:
            raise KeyError(f"clip {cid!r} is not in corpus {corpus.root}")
        dur = clip_duration(corpus, by_id[cid])
        n = int(round(dur * sfreq))
        if isinstance(source, str) and source == "envelope":
            x = acoustic.envelope(clip_audio(corpus, cid), AUDIO_SR, sfreq, n_out=n)[:, 0]
        elif isinstance(source, str) and source == "none":
            x = np.zeros(n)
        elif isinstance(source, str):
            raise ValueError(f"source must be 'envelope', 'none' or a mapping of clip id -> features, got {source!r}")
        else:
            feats = np.asarray(source[cid], dtype=np.float64)
            if proj is None:
                proj = plant_rng.normal(size=feats.shape[1])
                proj /= np.linalg.norm(proj)
            x = acoustic.to_rate(feats, sfreq, sfreq, n) @ proj
        segments.append(planted_driver(x, sfreq, lag_s, width_s))
        onsets.append(t)
        durations.append(dur)
        t += dur + gap_s
    n_total = int(round(t * sfreq)) + 1
    data = _ar1(rng, n_total, len(names))
    driver = np.zeros(n_total)
    for seg, t0 in zip(segments, onsets):
        s0 = int(round(t0 * sfreq))
        driver[s0 : s0 + len(seg)] = seg
    on = driver != 0
    if on.any() and r > 0:
        driver[on] = (driver[on] - driver[on].mean()) / driver[on].std()
        gain = r / np.sqrt(1 - r**2)  # corr(gain * d + e, d) = r for unit-variance d and e
        for c in planted:
            data[on, names.index(c)] += gain * driver[on]
    info = mne.create_info(names, sfreq, ch_types="eeg")
    what = "none" if isinstance(source, str) and source == "none" else (
        source if isinstance(source, str) else "features (random projection)")
    desc = (f"simulated: planted {what} at lag {lag_s:g} s (Gaussian width {width_s:g} s) on "
            f"{','.join(planted) if what != 'none' else 'no channel'} with r={r:g}; seed {seed}")
    info["description"] = desc
    raw = mne.io.RawArray(data.T * 1e-5, info, verbose="error")
    raw.set_montage(montage, verbose="error")
    raw.set_annotations(mne.Annotations(onsets, durations, ids))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        raw.save(tmp, overwrite=True, verbose="error") if str(tmp).endswith(".fif") else _save_fif(raw, tmp)
    write_json(out.with_suffix(".json") if out.suffix == ".fif" else Path(str(out) + ".json"),
               {"description": desc, "planted": list(planted) if what != "none" else [], "lag_s": lag_s,
                "width_s": width_s, "r": r, "source": what, "sfreq": sfreq, "clips": ids, "seed": seed}, indent=2)
    return out


def _save_fif(raw, tmp: Path) -> None:
    """MNE insists on a FIF file name: save beside the temporary path, then move it there."""
    real = tmp.parent / (tmp.name.replace(".tmp", "") + "_tmp_raw.fif")
    raw.save(real, overwrite=True, verbose="error")
    os.replace(real, tmp)


def simulate_subjects(corpus: Corpus, out: str | os.PathLike, n_subjects: int, *, bids_task: str | None = None,
                      seed: int = 0, **kw) -> list[Path]:
    """``n_subjects`` recordings of ``corpus`` sharing one planted response (``plant_seed=seed``) with
    independent noise (``seed + 1 + i``): ``out/sub-XX_eeg.fif``, or with ``bids_task`` a BIDS
    dataset at ``out`` written by mne-bids (events in ``events.tsv``, ``trial_type`` = clip id)."""
    out = Path(out)
    paths = []
    for i in range(n_subjects):
        sub = f"{i + 1:02d}"
        fif = simulate_eeg(corpus, out / ("_sim" if bids_task else "") / f"sub-{sub}_eeg.fif", seed=seed + 1 + i,
                           plant_seed=seed, **kw)
        if bids_task:
            paths.append(_to_bids(fif, out, sub, bids_task))
        else:
            paths.append(fif)
    if bids_task:
        import shutil

        shutil.rmtree(out / "_sim", ignore_errors=True)
    return paths


def _to_bids(fif: Path, root: Path, subject: str, task: str) -> Path:
    import mne
    import mne_bids

    raw = mne.io.read_raw_fif(fif, preload=False, verbose="error")
    bp = mne_bids.BIDSPath(subject=subject, task=task, datatype="eeg", root=root)
    mne_bids.write_raw_bids(raw, bp, overwrite=True, allow_preload=False, format="auto", verbose="error")
    return bp.fpath
