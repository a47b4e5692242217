"""Do the same sounds give the same tokens? Consistency (DRI), perturbation stability, re-encoding.

- :func:`consistency`: discrete representation inconsistency (arXiv 2409.19283): a slice of
  ``slice_s`` is encoded alone and inside ``context_s`` of its clip on each side; per codebook,
  the share of the slice's frames whose token is the same both ways (1 = context-free tokens).
- :func:`stability`: unit edit distance (arXiv 2509.22220) between the tokens of a clip and of a
  slightly perturbed copy (:data:`PERTURBATIONS`: white noise at 30 dB SNR, -6 dB gain, a 5 ms
  shift, resampling to 3/4 of the rate and back), per codebook, on the raw frame sequence
  (``ued``) and with repeated units collapsed (``ued_collapsed``), plus ``match``: the share of
  frames with the same token at the same index.
- :func:`reencode`: for sources with a decoder (codecs), the share of tokens that still match
  the first encoding after decoding and re-encoding ``n`` times (arXiv 2410.11025).

Every function takes a token source (:mod:`probes.tokens.sources`) and a list of clips at its
sample rate; each returns a pandas table.

Example
-------
>>> import numpy as np
>>> class Sign:  # a planted source: one token per 10-sample frame, the sign of its mean
...     sample_rate, frame_rate, decode = 100, 10.0, None
...     def encode(self, clips):
...         return [(c[: len(c) // 10 * 10].reshape(-1, 10).mean(1) > 0).astype(np.int64)[:, None] for c in clips]
>>> clip = np.repeat(np.resize([1.0, -1.0, 1.0], 40), 10).astype(np.float32)
>>> float(consistency(Sign(), [clip], slice_s=1.0, context_s=0.5)["consistency"].iloc[0])
1.0
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from probes.tokens.metrics import unit_edit_distance

__all__ = ["PERTURBATIONS", "consistency", "reencode", "slice_positions", "stability"]

Perturb = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _noise(snr_db: float) -> Perturb:
    def f(x, sr, rng):
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1e-4
        return (x + rng.standard_normal(len(x)) * rms * 10 ** (-snr_db / 20)).astype(np.float32)
    return f


def _gain(db: float) -> Perturb:
    return lambda x, sr, rng: (x * 10 ** (db / 20)).astype(np.float32)


def _shift(ms: float) -> Perturb:
    def f(x, sr, rng):
        n = round(sr * ms / 1000)
        return np.concatenate([np.zeros(n, np.float32), x[: len(x) - n]]).astype(np.float32)
    return f


def _resample(up: int, down: int) -> Perturb:
    def f(x, sr, rng):
        y = resample_poly(resample_poly(x, up, down), down, up)
        return np.pad(y[: len(x)], (0, max(0, len(x) - len(y)))).astype(np.float32)
    return f


#: name -> perturbation ``f(audio, sample_rate, rng) -> audio`` of the same length
PERTURBATIONS: dict[str, Perturb] = {
    "noise_30dB": _noise(30.0),
    "gain_-6dB": _gain(-6.0),
    "shift_5ms": _shift(5.0),
    "resample_3/4": _resample(3, 4),
}


def _hop(source) -> int:
    hop = source.sample_rate / source.frame_rate
    if abs(hop - round(hop)) > 1e-6:
        raise ValueError(f"consistency needs a whole number of samples per frame; {source.sample_rate} Hz / "
                         f"{source.frame_rate} frames/s = {hop}")
    return round(hop)


def slice_positions(n_frames: int, slice_frames: int, context_frames: int, max_slices: int,
                    rng: np.random.Generator) -> list[int]:
    """Start frames of up to ``max_slices`` non-overlapping slices with full context on both sides."""
    lo, hi = context_frames, n_frames - slice_frames - context_frames
    if hi < lo:
        return []
    starts = np.arange(lo, hi + 1, slice_frames)
    return sorted(rng.choice(starts, size=min(max_slices, len(starts)), replace=False).tolist())


def consistency(source, clips: Sequence[np.ndarray], slice_s: float = 1.0, context_s: float = 1.0,
                max_slices_per_clip: int = 4, seed: int = 0) -> pd.DataFrame:
    """Per codebook: ``codebook, slices, frames, consistency`` (share of equal tokens, alone vs in context)."""
    hop = _hop(source)
    L, C = max(1, round(slice_s * source.frame_rate)), max(1, round(context_s * source.frame_rate))
    rng = np.random.default_rng(seed)
    alone, ctx = [], []
    for clip in clips:
        for s in slice_positions(len(clip) // hop, L, C, max_slices_per_clip, rng):
            alone.append(clip[s * hop : (s + L) * hop])
            ctx.append(clip[(s - C) * hop : (s + L + C) * hop])
    if not alone:
        raise ValueError(f"no clip is long enough for a {slice_s} s slice with {context_s} s of context on each side")
    a_ids, c_ids = source.encode(alone), source.encode(ctx)
    equal, total = None, 0
    for a, c in zip(a_ids, c_ids):
        a, c = a[:L], c[C : C + L]
        n = min(len(a), len(c))
        eq = (a[:n] == c[:n]).sum(0)
        equal = eq if equal is None else equal + eq
        total += n
    return pd.DataFrame({"codebook": np.arange(len(equal)), "slices": len(alone), "frames": total,
                         "consistency": equal / max(total, 1)})


def stability(source, clips: Sequence[np.ndarray], perturbations: Mapping[str, Perturb] | None = None,
              seed: int = 0) -> pd.DataFrame:
    """Per perturbation and codebook: ``test, codebook, clips, frames, ued, ued_collapsed, match``
    (frame-weighted means over clips)."""
    perturbations = PERTURBATIONS if perturbations is None else perturbations
    clips = [np.asarray(c, np.float32) for c in clips]
    ref = source.encode(clips)
    rows = []
    for name, f in perturbations.items():
        rng = np.random.default_rng(seed)
        hyp = source.encode([f(c, source.sample_rate, rng) for c in clips])
        rows += _compare(name, ref, hyp)
    return _table(rows)


def reencode(source, clips: Sequence[np.ndarray], n: int = 5) -> pd.DataFrame:
    """Decode and re-encode ``n`` times; rows ``reencode_1 .. reencode_n`` against the first encoding."""
    if source.decode is None:
        raise ValueError("this token source has no decoder (re-encoding needs a codec)")
    ref = source.encode([np.asarray(c, np.float32) for c in clips])
    cur, rows = ref, []
    for i in range(1, n + 1):
        audio = [source.decode(ids)[: len(c)] for ids, c in zip(cur, clips)]
        cur = source.encode(audio)
        rows += _compare(f"reencode_{i}", ref, cur)
    return _table(rows)


def _compare(name: str, ref: list[np.ndarray], hyp: list[np.ndarray]) -> list[dict]:
    rows = []
    for r, h in zip(ref, hyp):
        n = min(len(r), len(h))
        for k in range(r.shape[1]):
            rows.append({"test": name, "codebook": k, "frames": len(r),
                         "ued": unit_edit_distance(r[:, k], h[:, k]),
                         "ued_collapsed": unit_edit_distance(r[:, k], h[:, k], collapse=True),
                         "match": float((r[:n, k] == h[:n, k]).sum() / max(len(r), 1))})
    return rows


def _table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["test", "codebook", "clips", "frames", "ued", "ued_collapsed", "match"])
    w = df["frames"].clip(lower=1)
    agg = []
    for (test, k), g in df.groupby(["test", "codebook"], sort=False):
        ww = w[g.index]
        agg.append({"test": test, "codebook": int(k), "clips": len(g), "frames": int(g["frames"].sum()),
                    **{m: float((g[m] * ww).sum() / ww.sum()) for m in ("ued", "ued_collapsed", "match")}})
    return pd.DataFrame(agg)
