"""NaN / inf samples in a recording: refused, interpolated or their channels dropped, and said so.

A non-finite sample silently poisons a TRF (the channel's r becomes 0, its neighbours' alphas and
FDR ranks move), so ``workbench neuro fit --bad-samples`` decides explicitly:

- ``error`` (default): refuse, naming the file, the channels and how many samples;
- ``interpolate``: linear interpolation over time within each channel (edges take the nearest
  finite value); a channel with no finite sample is dropped;
- ``drop-channel``: drop every channel holding a non-finite sample.

The report (mode, per-channel counts, dropped channels) goes into ``neuro.json`` as
``bad_samples`` and into the log.

Example
-------
>>> import numpy as np
>>> x = np.arange(12.0).reshape(6, 2); x[2, 0] = np.nan
>>> fixed, names, rep = fix_samples(x, ["a", "b"], "interpolate", "rec.fif")
>>> float(fixed[2, 0]), rep["samples"]
(4.0, {'a': 1})
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["MODES", "fix_samples", "fix_recording"]

MODES = ("error", "interpolate", "drop-channel")


def fix_samples(data: np.ndarray, ch_names: Sequence[str], mode: str, source: str
                ) -> tuple[np.ndarray, list[str], dict]:
    """``data [n, C]`` -> ``(data, channel names, report)`` under ``mode`` (see module docstring)."""
    if mode not in MODES:
        raise ValueError(f"--bad-samples must be one of {MODES}, got {mode!r}")
    bad = ~np.isfinite(data)
    counts = bad.sum(0)
    report = {"mode": mode, "samples": {ch_names[c]: int(counts[c]) for c in np.flatnonzero(counts)}, "dropped": []}
    if not bad.any():
        return data, list(ch_names), report
    where = ", ".join(f"{k} ({v})" for k, v in list(report["samples"].items())[:8])
    if mode == "error":
        raise ValueError(f"{source}: {int(counts.sum())} NaN/inf samples in {int((counts > 0).sum())} channel(s): "
                         f"{where}; choose --bad-samples interpolate or drop-channel")
    keep = np.ones(data.shape[1], dtype=bool)
    data = np.array(data, dtype=np.float64)
    for c in np.flatnonzero(counts):
        ok = ~bad[:, c]
        if mode == "drop-channel" or not ok.any():
            keep[c] = False
            continue
        t = np.arange(len(data))
        data[~ok, c] = np.interp(t[~ok], t[ok], data[ok, c])
    report["dropped"] = [ch_names[c] for c in np.flatnonzero(~keep)]
    if not keep.any():
        raise ValueError(f"{source}: every channel holds NaN/inf samples ({where}); nothing left to fit")
    log.warning("%s: %d NaN/inf samples (%s): %s%s", source, int(counts.sum()), where, mode,
                f"; dropped {report['dropped']}" if report["dropped"] else "")
    return data[:, keep], [c for c, k in zip(ch_names, keep) if k], report


def fix_recording(rec, mode: str):
    """Apply :func:`fix_samples` to a :class:`~neuro.recording.Recording`'s trials laid end to end
    (interpolation stays within each trial); the report lands in ``rec.meta["bad_samples"]``."""
    from neuro.recording import Recording, Trial

    lengths = [len(t.data) for t in rec.trials]
    data = np.concatenate([t.data for t in rec.trials]) if rec.trials else np.zeros((0, len(rec.ch_names)))
    if np.isfinite(data).all():
        rec.meta.setdefault("bad_samples", {"mode": mode, "samples": {}, "dropped": []})
        return rec
    fixed, names, report = [], None, None
    bad_any = ~np.isfinite(data)
    if mode == "drop-channel" or mode == "error":
        out, names, report = fix_samples(data, rec.ch_names, mode, rec.source)
        fixed = np.split(out, np.cumsum(lengths)[:-1])
    else:
        drop = [c for c in range(data.shape[1]) if any((~np.isfinite(t.data[:, c])).all() for t in rec.trials)]
        keep = [c for c in range(data.shape[1]) if c not in drop]
        for t in rec.trials:
            out, _, _ = fix_samples(t.data[:, keep], [rec.ch_names[c] for c in keep], mode, rec.source)
            fixed.append(out)
        names = [rec.ch_names[c] for c in keep]
        counts = bad_any.sum(0)
        report = {"mode": mode, "samples": {rec.ch_names[c]: int(counts[c]) for c in np.flatnonzero(counts)},
                  "dropped": [rec.ch_names[c] for c in drop]}
    keep_idx = [rec.ch_names.index(n) for n in names]
    info = rec.info
    if info is not None and len(keep_idx) != len(rec.ch_names):
        import mne

        info = mne.pick_info(info, keep_idx)
    meta = dict(rec.meta, bad_samples=report)
    return Recording([Trial(t.clip_id, x) for t, x in zip(rec.trials, fixed)], rec.sfreq, names, rec.source, info,
                     rec.description, meta)
