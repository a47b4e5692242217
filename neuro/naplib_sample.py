"""The naplib sample: ten audiobook excerpts with ten channels of simulated intracranial responses.

PyPI ``naplib`` ships ``naplib/io/sample_data/demo_data.mat`` (MATLAB v7.3 = HDF5): per trial
``sound`` at ``soundf`` = 11,025 Hz, ``resp`` ``[T, 10]`` at ``dataf`` = 100 Hz (simulated from
spectro-temporal receptive fields of the audio), ``name``, ``script`` (transcript), ``duration``,
``befaft`` and ``chname``. naplib itself pins ``numpy<2``, so it is not a dependency: install the
wheel without its dependencies (``make neuro-data``, i.e. ``pip install --no-deps naplib==2.6.0``)
and this module reads the file with h5py, never importing naplib. Sound and response start
together (both cover ``duration`` seconds).

:func:`export_naplib_sample` turns it into what ``workbench neuro fit`` reads: a corpus (audio +
``manifest.jsonl`` with transcripts) and a FIF recording with one annotation per clip.

Example
-------
>>> sample = naplib_sample()                                        # doctest: +SKIP
>>> len(sample.sounds), sample.soundf, sample.responses[0].shape    # doctest: +SKIP
(10, 11025.0, (6197, 10))
>>> corpus_dir, fif = export_naplib_sample("work/naplib")          # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuro.recording import load_mat
from workbench.atomic import atomic_path
from workbench.audio import save_audio
from workbench.corpus.types import Clip, Corpus

__all__ = ["NaplibSample", "naplib_sample_path", "naplib_sample", "export_naplib_sample", "NAPLIB_DESCRIPTION"]

NAPLIB_DESCRIPTION = "naplib sample"
INSTALL_HINT = "install it with `make neuro-data` (pip install --no-deps naplib==2.6.0)"


@dataclass
class NaplibSample:
    names: list[str]
    sounds: list[np.ndarray]  # [n] float32 at soundf
    soundf: float
    responses: list[np.ndarray]  # [T, C] at dataf
    dataf: float
    scripts: list[str]
    ch_names: list[str]
    befaft: list[tuple[float, float]]


def naplib_sample_path() -> Path:
    """Path of naplib's ``demo_data.mat`` (found without importing naplib)."""
    spec = importlib.util.find_spec("naplib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the naplib package is not installed; {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "io" / "sample_data" / "demo_data.mat"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the naplib install; {INSTALL_HINT}")
    return path


def _time_major(arr: np.ndarray, n_expected: float, what: str) -> np.ndarray:
    """Orient ``arr`` as [time, ...]: the axis whose length fits the duration is time."""
    arr = np.atleast_2d(np.asarray(arr, dtype=np.float64))
    if abs(arr.shape[0] - n_expected) <= abs(arr.shape[-1] - n_expected):
        return arr
    return arr.T


def naplib_sample(path: str | os.PathLike | None = None) -> NaplibSample:
    """Read the sample with h5py (see module docstring)."""
    path = Path(path) if path is not None else naplib_sample_path()
    mat = load_mat(path)
    if "out" not in mat or not isinstance(mat["out"], dict):
        raise ValueError(f"{path}: no struct 'out' (variables: {sorted(mat)})")
    out = mat["out"]
    need = ("sound", "soundf", "resp", "dataf", "name", "duration")
    missing = [k for k in need if k not in out]
    if missing:
        raise ValueError(f"{path}: struct 'out' lacks {missing}")
    n = len(out["resp"])
    sounds, resps = [], []
    for i in range(n):
        dur, sf, df = float(out["duration"][i]), float(out["soundf"][i]), round(float(out["dataf"][i]), 6)
        sounds.append(_time_major(out["sound"][i], dur * sf, "sound").reshape(-1).astype(np.float32))
        resps.append(_time_major(out["resp"][i], dur * df, "resp"))
    rates = {round(float(x), 6) for x in out["dataf"]}
    srates = {float(x) for x in out["soundf"]}
    if len(rates) != 1 or len(srates) != 1:
        raise ValueError(f"{path}: trials at different rates (dataf {sorted(rates)}, soundf {sorted(srates)})")
    ch = out.get("chname", [None])[0]
    ch_names = [str(c) for c in ch] if isinstance(ch, list) else [f"ch{j}" for j in range(resps[0].shape[1])]
    befaft = [tuple(float(v) for v in np.ravel(b)) for b in out.get("befaft", [[0, 0]] * n)]
    return NaplibSample([str(x) for x in out["name"]], sounds, srates.pop(), resps, rates.pop(),
                        [str(s) for s in out.get("script", [""] * n)], ch_names, befaft)


def export_naplib_sample(out_dir: str | os.PathLike, gap_s: float = 1.0,
                         sample: NaplibSample | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/corpus`` (wav at 11,025 Hz + manifest.jsonl) and ``out_dir/sub-naplib_ieeg.fif``
    (channels as sEEG, responses end to end with ``gap_s`` of zeros, annotations = clip ids);
    returns ``(corpus_dir, fif_path)``."""
    import mne

    sample = sample or naplib_sample()
    out_dir = Path(out_dir)
    corpus_dir = out_dir / "corpus"
    (corpus_dir / "audio").mkdir(parents=True, exist_ok=True)
    clips = []
    for name, snd, script in zip(sample.names, sample.sounds, sample.scripts):
        rel = f"audio/{name}.wav"
        peak = float(np.abs(snd).max()) or 1.0
        save_audio(corpus_dir / rel, snd / peak * 0.9 if peak > 1 else snd, int(sample.soundf), subtype="FLOAT")
        clips.append(Clip(name, rel, "speech", speaker="naplib", transcript=script,
                          duration_s=len(snd) / sample.soundf, extra={"source": "naplib sample"}))
    Corpus(clips, root=corpus_dir).save(corpus_dir / "manifest.jsonl")
    gap = int(round(gap_s * sample.dataf))
    n_ch = sample.responses[0].shape[1]
    pieces, onsets, durations, t = [np.zeros((gap, n_ch))], [], [], gap
    for clip, resp in zip(clips, sample.responses):
        n = min(len(resp), int(round(clip.duration_s * sample.dataf)))
        onsets.append(t / sample.dataf)
        durations.append(n / sample.dataf)
        pieces += [resp[:n], np.zeros((gap, n_ch))]
        t += n + gap
    info = mne.create_info(sample.ch_names, sample.dataf, ch_types="seeg")
    info["description"] = NAPLIB_DESCRIPTION
    raw = mne.io.RawArray(np.concatenate(pieces).T, info, verbose="error")
    raw.set_annotations(mne.Annotations(onsets, durations, [c.id for c in clips]))
    fif = out_dir / "sub-naplib_ieeg.fif"
    with atomic_path(fif) as tmp:
        real = tmp.parent / (tmp.name + "_raw.fif")
        raw.save(real, overwrite=True, verbose="error")
        os.replace(real, tmp)
    return corpus_dir, fif
