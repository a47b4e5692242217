"""A feature's examples as a reader should see them: one per firing event, quantile bands with counts,
and a headline that says what the feature fires on.

Pure functions over tables (no workspace, no browser), used by :mod:`apps.data` and the features page.

- :func:`events`: frames where a feature fires, grouped per clip into events (runs of firing frames
  less than ``gap_s`` apart), each event represented by its strongest frame. Top examples are the
  strongest events, so ten examples are ten different moments, not ten adjacent frames of one.
- :func:`quantile_bands`: the activation range split into bands of equal frame counts, each band's
  range and count (and one example event per band, from :func:`band_examples`).
- :func:`headline`: the feature's explanation when the SAE bench wrote one, else the domain it
  mostly fires on when that is not speech, else its phone/word mix; the domain mix always beside it.

Example
-------
>>> import pandas as pd
>>> hits = pd.DataFrame({"clip_id": ["a"] * 4 + ["b"], "start_s": [0.0, 0.02, 0.04, 3.0, 1.0],
...                      "end_s": [0.02, 0.04, 0.06, 3.02, 1.02], "activation": [1.0, 5.0, 2.0, 4.0, 3.0]})
>>> ev = events(hits)
>>> list(zip(ev["clip_id"], ev["activation"], ev["n_frames"]))
[('a', 5.0, 3), ('a', 4.0, 1), ('b', 3.0, 1)]
>>> headline({"share_speech": 0.06, "share_environment": 0.94, "top_phones": '[["EH", 0.37]]'})
'fires mostly on environment sounds (94% of its activation)'
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

EVENT_GAP_S = 0.1  # firing frames of one clip closer than this belong to one event
SPEECH_DOMAINS = ("speech",)


def events(hits: pd.DataFrame, gap_s: float = EVENT_GAP_S) -> pd.DataFrame:
    """One row per firing event (its strongest frame's row, plus ``event_start_s``, ``event_end_s``,
    ``n_frames``), strongest first. ``hits``: frames where the feature fires, with ``clip_id``,
    ``start_s``, ``end_s`` and ``activation`` (duplicates of one frame are fine)."""
    if hits.empty:
        return hits.assign(event_start_s=[], event_end_s=[], n_frames=[])
    h = hits.drop_duplicates(subset=["clip_id", "start_s"]).sort_values(["clip_id", "start_s"]).reset_index(drop=True)
    new_clip = h["clip_id"].ne(h["clip_id"].shift())
    prev_end = h["end_s"].shift().where(~new_clip)
    new_event = new_clip | (h["start_s"] - prev_end > gap_s)
    h["event"] = new_event.cumsum()
    g = h.groupby("event")
    best = h.loc[g["activation"].idxmax()].set_index("event")
    best["event_start_s"] = g["start_s"].min()
    best["event_end_s"] = g["end_s"].max()
    best["n_frames"] = g.size()
    return best.sort_values("activation", ascending=False, kind="stable").reset_index(drop=True)


def quantile_bands(activations: np.ndarray, n: int = 5) -> pd.DataFrame:
    """``band`` (1 = weakest), ``lo``, ``hi`` and ``frames`` of ``n`` equal-count activation bands."""
    a = np.sort(np.asarray(activations, dtype=float))
    if not len(a):
        return pd.DataFrame(columns=["band", "lo", "hi", "frames"])
    parts = [p for p in np.array_split(a, min(n, len(a))) if len(p)]
    return pd.DataFrame({"band": np.arange(1, len(parts) + 1), "lo": [p[0] for p in parts],
                         "hi": [p[-1] for p in parts], "frames": [len(p) for p in parts]})


def band_examples(ev: pd.DataFrame, bands: pd.DataFrame) -> pd.DataFrame:
    """For each band, the event whose activation is the median of the band's events (``band`` added);
    bands with no event of their own are skipped."""
    rows = []
    for b in bands.itertuples():
        inside = ev[(ev["activation"] >= b.lo) & (ev["activation"] <= b.hi)].sort_values("activation")
        if len(inside):
            rows.append(inside.iloc[len(inside) // 2].to_dict() | {"band": int(b.band), "band_frames": int(b.frames)})
    return pd.DataFrame(rows)


def _labels(cell) -> list[tuple[str, float]]:
    try:
        return [(str(a), float(b)) for a, b in json.loads(cell or "[]")]
    except (TypeError, ValueError):
        return []


def domain_mix(row) -> dict[str, float]:
    """``{domain: share}`` of a feature-table row (its ``share_*`` columns), largest first."""
    mix = {k.removeprefix("share_"): float(v) for k, v in dict(row).items()
           if str(k).startswith("share_") and v is not None and np.isfinite(v)}
    return dict(sorted(mix.items(), key=lambda kv: -kv[1]))


def headline(row, explanation: dict | None = None) -> str:
    """What the feature fires on, in one line (see module docstring)."""
    if explanation and str(explanation.get("explanation") or "").strip():
        text = str(explanation["explanation"]).strip()
        score = explanation.get("f1")
        return f"“{text}”" + (f" (held-out F1 {float(score):.2f})" if score is not None and np.isfinite(score) else "")
    mix = domain_mix(row)
    if mix:
        top, share = next(iter(mix.items()))
        if top not in SPEECH_DOMAINS and share >= 0.5:
            return f"fires mostly on {top} sounds ({share:.0%} of its activation)"
    parts = [", ".join(f"{a} {b:.2f}" for a, b in _labels(dict(row).get(k))[:3]) for k in ("top_phones", "top_words")]
    parts = [p for p in parts if p]
    return ("speech: " + " · ".join(parts)) if parts else "no label summary"
