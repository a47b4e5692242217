"""Neural recordings cut into trials aligned to corpus clips.

Readers (all return a :class:`Recording`: one :class:`Trial` per presented clip, ``[n, C]`` at one
sampling rate, channel names and, when the file has one, an ``mne.Info`` with the montage):

- continuous files through MNE (``.fif``, ``.edf``, ``.bdf``, ``.vhdr``, ``.set``): annotations
  whose description is a corpus clip id mark that clip's onset (``BAD_*``, ``EDGE*``,
  ``boundary`` and BrainVision ``New Segment`` annotations are ignored; a BrainVision
  ``Comment/<clip id>`` marker counts as ``<clip id>``); a BIDS-style ``*_events.tsv`` beside the file (columns
  ``onset`` and ``clip_id`` or ``stim_file``; ``duration`` optional) takes precedence;
- a folder: the one recording inside it (BIDS layout: ``*_eeg.*``, ``*_meg.fif``, ``*_ieeg.*``);
- CND ``.mat`` (``dataSub``/``eeg`` struct with ``data`` cell of ``[T, C]`` trials and ``fs``;
  MATLAB v5 through scipy, v7.3 through h5py): trial i is ``clip_ids[i]`` (default: corpus order);
- :func:`from_arrays`: per-trial arrays (naplib ``Data`` objects go through
  :func:`from_naplib_data`).

Errors name the file and the trial: a clip id that is not in the corpus, a recording shorter than
its stimulus, a trial whose length does not fit its clip's duration at the stated rate (a
sampling-rate mismatch).

Example
-------
>>> rec = read_recording("sub-01_task-listen_eeg.fif", corpus)       # doctest: +SKIP
>>> rec.sfreq, rec.ch_names[:3], [t.clip_id for t in rec.trials][:2]   # doctest: +SKIP
"""
from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench.audio import audio_info
from workbench.corpus.types import Clip, Corpus

log = logging.getLogger(__name__)

__all__ = ["Trial", "Recording", "read_recording", "from_arrays", "from_raw", "from_naplib_data", "read_cnd",
           "clip_duration", "MNE_EXTENSIONS"]

MNE_EXTENSIONS = (".fif", ".fif.gz", ".edf", ".bdf", ".vhdr", ".set")
_IGNORED_ANNOTATIONS = ("bad", "edge", "boundary", "new segment")
#: a per-trial array may differ from its clip's duration by this fraction (and at least 2 samples)
LENGTH_TOLERANCE = 0.02


@dataclass
class Trial:
    clip_id: str
    data: np.ndarray  # [n, C] float64 at Recording.sfreq, sample 0 = clip onset


@dataclass
class Recording:
    trials: list[Trial]
    sfreq: float
    ch_names: list[str]
    source: str
    info: Any = None  # mne.Info when the source has one (montage for topomaps)
    description: str = ""  # "simulated", "naplib sample", ... from the file's own description
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_montage(self) -> bool:
        return self.info is not None and self.info.get_montage() is not None

    def pick(self, patterns: Sequence[str] | None) -> "Recording":
        """Keep channels matching any glob in ``patterns`` (None keeps all)."""
        if not patterns:
            return self
        keep = [i for i, c in enumerate(self.ch_names) if any(fnmatch.fnmatchcase(c, p) for p in patterns)]
        if not keep:
            raise ValueError(f"{self.source}: no channel matches {list(patterns)}; channels: {self.ch_names}")
        info = None
        if self.info is not None:
            import mne

            info = mne.pick_info(self.info, keep)
        return Recording([Trial(t.clip_id, t.data[:, keep]) for t in self.trials], self.sfreq,
                         [self.ch_names[i] for i in keep], self.source, info, self.description, dict(self.meta))


def clip_duration(corpus: Corpus, clip: Clip) -> float:
    """The clip's duration in seconds (the manifest's, else read from the audio file)."""
    if clip.duration_s:
        return float(clip.duration_s)
    return float(audio_info(corpus.audio_path(clip))[2])


def _clips_by_id(corpus: Corpus) -> dict[str, Clip]:
    return {c.id: c for c in corpus}


def _unknown_clip(source: str, where: str, clip_id: str, corpus: Corpus) -> ValueError:
    ids = [c.id for c in corpus]
    return ValueError(f"{source}: {where}: {clip_id!r} is not a clip id in corpus {corpus.root} "
                      f"({len(ids)} clips, e.g. {ids[:3]})")


def _check_length(source: str, i: int, clip_id: str, n: int, sfreq: float, duration: float) -> None:
    expected = duration * sfreq
    if abs(n - expected) > max(2.0, LENGTH_TOLERANCE * expected):
        raise ValueError(f"{source}: trial {i} (clip {clip_id!r}) has {n} samples = {n / sfreq:.2f} s at "
                         f"{sfreq:g} Hz, but the clip lasts {duration:.2f} s (expected ~{expected:.0f} samples): "
                         "sampling-rate mismatch or wrong clip?")


def from_arrays(arrays: Sequence[np.ndarray], clip_ids: Sequence[str], sfreq: float, corpus: Corpus, *,
                ch_names: Sequence[str] | None = None, source: str = "<arrays>", description: str = "",
                info: Any = None) -> Recording:
    """A recording from per-trial ``[n, C]`` arrays, each starting at its clip's onset.

    Each trial is checked against its clip's duration (a sampling-rate mismatch is an error) and
    trimmed to it.
    """
    if len(arrays) != len(clip_ids):
        raise ValueError(f"{source}: {len(arrays)} trials but {len(clip_ids)} clip ids")
    clips = _clips_by_id(corpus)
    trials = []
    for i, (arr, cid) in enumerate(zip(arrays, clip_ids)):
        if cid not in clips:
            raise _unknown_clip(source, f"trial {i}", cid, corpus)
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{source}: trial {i} (clip {cid!r}) must be [time, channels], got shape {arr.shape}")
        dur = clip_duration(corpus, clips[cid])
        _check_length(source, i, cid, len(arr), sfreq, dur)
        trials.append(Trial(cid, arr[: int(round(dur * sfreq))]))
    n_ch = {t.data.shape[1] for t in trials}
    if len(n_ch) != 1:
        raise ValueError(f"{source}: trials have different channel counts {sorted(n_ch)}")
    names = list(ch_names) if ch_names is not None else [f"ch{i:02d}" for i in range(n_ch.pop())]
    return Recording(trials, float(sfreq), names, source, info, description)


def _events_tsv(path: Path) -> Path | None:
    """A BIDS ``*_events.tsv`` beside ``path`` (``sub-01_task-x_eeg.fif`` -> ``sub-01_task-x_events.tsv``)."""
    name = path.name
    for ext in MNE_EXTENSIONS:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    stem = name.rsplit("_", 1)[0] if "_" in name else name
    for cand in (path.parent / f"{stem}_events.tsv", path.parent / f"{name}_events.tsv"):
        if cand.is_file():
            return cand
    return None


def _onsets_from_tsv(tsv: Path, clips: dict[str, Clip], corpus: Corpus) -> list[tuple[str, float]]:
    import pandas as pd

    df = pd.read_csv(tsv, sep="\t")
    if "onset" not in df.columns:
        raise ValueError(f"{tsv}: no 'onset' column (columns: {list(df.columns)})")
    col = "clip_id" if "clip_id" in df.columns else "stim_file" if "stim_file" in df.columns else None
    if col is None:
        raise ValueError(f"{tsv}: needs a 'clip_id' or 'stim_file' column (columns: {list(df.columns)})")
    by_stem = {Path(c.path).stem: c.id for c in corpus}
    out = []
    for i, row in df.iterrows():
        key = row[col]
        if not isinstance(key, str) or key in ("n/a", ""):
            continue
        cid = key if key in clips else by_stem.get(Path(key).stem)
        if cid is None:
            raise _unknown_clip(str(tsv), f"row {i}", key, corpus)
        out.append((cid, float(row["onset"])))
    return out


def from_raw(raw, corpus: Corpus, *, source: str | None = None, events_tsv: str | os.PathLike | None = None,
             description: str | None = None) -> Recording:
    """Cut an ``mne.io.Raw`` into trials at its clip-id annotations (or ``events_tsv`` rows)."""
    source = source or str(raw.filenames[0] if raw.filenames and raw.filenames[0] else "<raw>")
    raw = raw.copy().pick("data", exclude="bads") if len(raw.ch_names) else raw
    clips = _clips_by_id(corpus)
    if events_tsv is not None:
        onsets = _onsets_from_tsv(Path(events_tsv), clips, corpus)
        where = str(events_tsv)
    else:
        onsets, where = [], source
        ann = raw.annotations
        rel = ann.onset - (raw.first_time if ann.orig_time is not None else 0.0)
        for desc, t in zip(ann.description, rel):
            if desc.lower().startswith(_IGNORED_ANNOTATIONS):
                continue
            if desc not in clips and "/" in desc and desc.split("/", 1)[1] in clips:
                desc = desc.split("/", 1)[1]  # BrainVision markers read back as "Comment/<text>"
            if desc not in clips:
                raise _unknown_clip(source, f"annotation at {t:.3f} s", desc, corpus)
            onsets.append((desc, float(t)))
    if not onsets:
        raise ValueError(f"{where}: no annotation or event names a clip of corpus {corpus.root}")
    sfreq = float(raw.info["sfreq"])
    data = raw.get_data().T  # [n_times, C]
    trials = []
    for i, (cid, t0) in enumerate(onsets):
        dur = clip_duration(corpus, clips[cid])
        start, n = int(round(t0 * sfreq)), int(round(dur * sfreq))
        if start < 0 or start + n > len(data):
            raise ValueError(f"{where}: trial {i} (clip {cid!r}, onset {t0:.3f} s) needs {dur:.2f} s of data but "
                             f"the recording is {len(data) / sfreq:.2f} s long")
        trials.append(Trial(cid, data[start : start + n].astype(np.float64)))
    desc = description if description is not None else (raw.info.get("description") or "")
    return Recording(trials, sfreq, list(raw.ch_names), source, raw.info, desc)


def _find_in_folder(folder: Path) -> Path:
    hits = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(MNE_EXTENSIONS)
                  and any(tag in p.name for tag in ("_eeg", "_meg", "_ieeg")))
    if not hits:
        hits = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(MNE_EXTENSIONS))
    if len(hits) != 1:
        raise ValueError(f"{folder}: expected one recording ({', '.join(MNE_EXTENSIONS)}), found "
                         f"{[str(h.relative_to(folder)) for h in hits][:10]}; pass the file itself")
    return hits[0]


def read_recording(path: str | os.PathLike, corpus: Corpus, *, sfreq: float | None = None,
                   clip_ids: Sequence[str] | None = None, events_tsv: str | os.PathLike | None = None,
                   band: tuple[float | None, float | None] | None = None, bad_samples: str = "error") -> Recording:
    """Read ``path`` (file or folder, see module docstring) and cut it into trials of ``corpus`` clips.

    ``sfreq`` resamples continuous recordings with MNE (anti-aliased) before cutting; ``band``
    band-pass filters them (``(1, 8)`` Hz is common for speech EEG). ``clip_ids`` names CND trials.
    NaN/inf samples of a continuous recording are handled by ``bad_samples`` before any filtering
    or resampling could spread them (:mod:`neuro.bad_samples`; the report is in ``meta``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such recording")
    if path.is_dir():
        path = _find_in_folder(path)
    name = path.name.lower()
    if name.endswith(".mat"):
        return read_cnd(path, corpus, clip_ids=clip_ids)
    if not name.endswith(MNE_EXTENSIONS):
        raise ValueError(f"{path}: unknown recording format; expected one of {MNE_EXTENSIONS} or a CND .mat")
    import mne

    try:
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as e:  # MNE raises many types for damaged files; name the file
        raise ValueError(f"{path}: MNE could not read it: {e}") from e
    report = _fix_raw(raw, bad_samples, str(path))
    if band is not None:
        raw.filter(band[0], band[1], verbose="error")
    if sfreq is not None and abs(float(sfreq) - raw.info["sfreq"]) > 1e-9:
        raw.resample(float(sfreq), verbose="error")
    tsv = Path(events_tsv) if events_tsv is not None else _events_tsv(path)
    rec = from_raw(raw, corpus, source=str(path), events_tsv=tsv)
    rec.meta["bad_samples"] = report
    return rec


def _fix_raw(raw, mode: str, source: str) -> dict:
    """NaN/inf samples of an MNE raw (data channels) under ``mode``, in place; returns the report."""
    from neuro.bad_samples import fix_samples

    picks = raw.copy().pick("data", exclude="bads").ch_names if len(raw.ch_names) else []
    data = raw.get_data(picks=picks)
    if np.isfinite(data).all():
        return {"mode": mode, "samples": {}, "dropped": []}
    fixed, names, report = fix_samples(data.T, picks, mode, source)
    if report["dropped"]:
        raw.drop_channels(report["dropped"])
    raw._data[[raw.ch_names.index(n) for n in names]] = fixed.T
    return report


# --- MATLAB files: CND and naplib ---------------------------------------------------------------
def load_mat(path: str | os.PathLike) -> dict[str, Any]:
    """A .mat file as nested dicts/lists/arrays: MATLAB v5 via scipy, v7.3 (HDF5) via h5py.

    HDF5 datasets come back in MATLAB's orientation (h5py reads them transposed); char arrays
    become ``str``; cell arrays of references become lists.
    """
    path = Path(path)
    import h5py

    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            return {k: _h5_value(f, f[k]) for k in f.keys() if not k.startswith("#")}
    from scipy.io import loadmat

    try:
        return {k: v for k, v in loadmat(path, simplify_cells=True).items() if not k.startswith("__")}
    except Exception as e:
        raise ValueError(f"{path}: not a readable MATLAB file: {e}") from e


def _h5_value(f, obj):
    import h5py

    if isinstance(obj, h5py.Group):
        return {k: _h5_value(f, obj[k]) for k in obj.keys()}
    if obj.dtype == h5py.ref_dtype:
        refs = np.asarray(obj).reshape(-1, order="F")
        return [_h5_value(f, f[r]) for r in refs]
    data = np.asarray(obj)
    if obj.attrs.get("MATLAB_class", b"") in (b"char",) or data.dtype == np.uint16:
        return "".join(chr(c) for c in data.reshape(-1, order="F") if c)
    data = data.T  # MATLAB is column-major: h5py shows the dimensions reversed
    return data.item() if data.size == 1 else data


def read_cnd(path: str | os.PathLike, corpus: Corpus, *, clip_ids: Sequence[str] | None = None) -> Recording:
    """A CND EEG file (``dataSub.mat``: struct ``eeg`` or ``dataSub`` with ``data`` and ``fs``)."""
    mat = load_mat(path)
    key = next((k for k in ("eeg", "dataSub", "data_sub") if k in mat), None)
    if key is None:
        raise ValueError(f"{path}: no CND 'eeg' / 'dataSub' struct (variables: {sorted(mat)})")
    st = mat[key]
    if not isinstance(st, dict) or "data" not in st or "fs" not in st:
        raise ValueError(f"{path}: CND struct {key!r} needs fields 'data' and 'fs'")
    trials = st["data"]
    trials = list(trials) if isinstance(trials, (list, tuple, np.ndarray)) and np.ndim(trials[0]) >= 1 else [trials]
    ids = list(clip_ids) if clip_ids is not None else [c.id for c in corpus][: len(trials)]
    if len(ids) < len(trials):
        raise ValueError(f"{path}: {len(trials)} trials but only {len(ids)} clip ids (corpus {corpus.root})")
    names = None
    if isinstance(st.get("chanlocs"), (list, dict)):
        locs = st["chanlocs"]
        labels = locs.get("labels") if isinstance(locs, dict) else [c.get("labels") for c in locs]
        names = list(labels) if labels is not None and len(labels) == np.shape(trials[0])[1] else None
    return from_arrays(trials, ids, float(st["fs"]), corpus, ch_names=names, source=str(path),
                       description=str(st.get("description", "")))


def from_naplib_data(data, corpus: Corpus, *, clip_field: str = "name", source: str = "<naplib Data>") -> Recording:
    """A naplib ``Data`` object (or any sequence of trial dicts with ``resp`` and ``dataf``)."""
    trials = list(data)
    if not trials:
        raise ValueError(f"{source}: no trials")
    rates = {float(t["dataf"]) for t in trials}
    if len(rates) != 1:
        raise ValueError(f"{source}: trials have different sampling rates {sorted(rates)}")
    chnames = trials[0].get("chname") if hasattr(trials[0], "get") else None
    return from_arrays([t["resp"] for t in trials], [str(t[clip_field]) for t in trials], rates.pop(), corpus,
                       ch_names=list(chnames) if chnames is not None else None, source=source)
