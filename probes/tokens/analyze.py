"""``workbench tokens analyze``: usage, meaning, consistency and stability of one integer track.

Writes into ``out`` (the workspace's ``tokens/NAME/``):

- ``usage.csv`` (codebook, frames, codes_used, entropy_bits, perplexity) and
  ``rank_frequency.csv`` (codebook, rank, code, count, share);
- ``purity.csv`` (codebook, target, frames, classes, purity, purity_chance, majority, mi_bits,
  mi_chance_bits, label_entropy_bits, mi_norm) against ``phones``, ``speaker``, ``domain``;
- ``consistency.csv`` (codebook, slices, frames, consistency) and ``stability.csv`` (test,
  codebook, clips, frames, ued, ued_collapsed, match) when the model is loaded (``robust``);
- ``token_cochleagrams.npz`` (``codes``, ``counts``, ``mean [n, 211]``: each frequent token's
  mean cochleagram frame, codebook 0) when ``cochleagram`` is on;
- ``summary.json`` (source, hook, sizes, the headline of every table, step times) and
  ``tokens.html`` (rank-frequency and purity plots).

Example
-------
>>> from workbench.cache import ActivationCache                              # doctest: +SKIP
>>> analyze_cache(ActivationCache.open("work/caches/units"), "work/tokens/units")  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from probes.report import _clean
from probes.tokens import metrics, robust
from workbench.atomic import write_json, write_text

logger = logging.getLogger(__name__)

__all__ = ["TARGETS", "analyze_cache", "integer_hook", "purity_table", "token_cochleagrams"]

TARGETS = ("phones", "speaker", "domain")
PURITY_COLUMNS = ["codebook", "target", "frames", "classes", "purity", "purity_chance", "majority", "mi_bits",
                  "mi_chance_bits", "label_entropy_bits", "mi_norm"]


def integer_hook(cache, hook: str | None) -> str:
    """``hook`` checked to be an integer track of ``cache``, or its only integer hook when None."""
    ints = [h for h in cache.hooks if cache.hook_dtype(h) == "int32"]
    if hook is None:
        if len(ints) == 1:
            return ints[0]
        raise ValueError(f"{cache.root}: {'no integer hook' if not ints else 'several integer hooks ' + str(ints)}; "
                         "pass --hook (a float hook: make units first with `workbench tokens units`)")
    cache.hook_dtype(hook)  # KeyError naming the cached hooks
    if hook not in ints:
        raise ValueError(f"{hook!r} of {cache.root} is a float hook, not tokens; make units of it with "
                         f"`workbench tokens units --cache {cache.root} --hook {hook} --k 500 --out UNITS`")
    return hook


def _target_labels(cache, hook: str, target: str) -> np.ndarray | None:
    try:
        return cache.labels(target, hook)
    except KeyError:
        return None


def purity_table(cache, hook: str, ids: np.ndarray, targets=TARGETS, seed: int = 0) -> pd.DataFrame:
    rows = []
    for target in targets:
        labels = _target_labels(cache, hook, target)
        if labels is None:
            logger.info("%s: no %r labels in the frame table; skipped", cache.root, target)
            continue
        for k in range(ids.shape[1]):
            r = metrics.purity_mi(ids[:, k], labels, seed=seed)
            if r["classes"] < 2:
                logger.info("%s: fewer than 2 %r labels on its frames; skipped", cache.root, target)
                break
            rows.append({"codebook": k, "target": target, **r})
    return pd.DataFrame(rows, columns=PURITY_COLUMNS)


def _clip_audio(cache, corpus, sample_rate: int, max_clips: int, seed: int) -> list[np.ndarray]:
    from workbench.audio import load_audio

    by_id = {c.id: c for c in corpus}
    ids = [c for c in cache.clip_ids if c in by_id]
    if not ids:
        raise ValueError(f"none of the {len(cache.clip_ids)} clips of {cache.root} is in the corpus {corpus.root}")
    speech = [c for c in ids if by_id[c].domain == "speech"] or ids
    pick = np.random.default_rng(seed).permutation(len(speech))[:max_clips]
    return [load_audio(corpus.audio_path(by_id[speech[i]]), sr=sample_rate) for i in sorted(pick)]


COCHLEAGRAM_HOOK = "cochleagram.hook_out"


def cochleagram_cache(cache):
    """A cache of ``cochleagram.hook_out`` over the same corpus as ``cache`` (the workspace's convention for
    the Cochlear tokens page): ``cache`` itself when it holds the hook, else a sibling cache (the same
    ``caches/`` folder) with the same corpus fingerprint; None when there is none."""
    from workbench.cache import ActivationCache

    if COCHLEAGRAM_HOOK in cache.hooks:
        return cache
    want = cache.meta.get("corpus", {}).get("fingerprint")
    root = Path(cache.root).resolve()
    for d in sorted(root.parent.iterdir()) if want else []:
        if d == root or not (d / "cache.json").is_file():
            continue
        try:
            other = ActivationCache.open(d)
        except Exception as e:  # noqa: BLE001 - an unreadable sibling is skipped, not fatal
            logger.info("%s: not read (%s)", d, e)
            continue
        if COCHLEAGRAM_HOOK in other.hooks and other.meta.get("corpus", {}).get("fingerprint") == want:
            return other
    return None


def _nearest_frame(centre_s: np.ndarray, n: int) -> np.ndarray:
    """Index of the 200-Hz cochleagram frame (frame k centred at k / 200 s) nearest each time; a time half
    way between two frames (a WavCoch token k is centred at (k + 0.5) / 200 s) takes the earlier one."""
    return np.clip(np.ceil(np.asarray(centre_s) * 200 - 0.5 - 1e-6).astype(np.int64), 0, n - 1)


def token_cochleagrams(cache, hook: str, ids: np.ndarray, corpus, top: int = 256, coch=None) -> dict[str, np.ndarray]:
    """Mean 211-channel cochleagram frame at the centre of each of the ``top`` most frequent tokens
    (codebook 0), over every clip of the corpus: ``{"codes", "counts", "mean"}``.

    The frame is the 200-Hz cochleagram frame nearest each token frame's centre, read from ``coch`` (a
    cache with ``cochleagram.hook_out`` of the same corpus, :func:`cochleagram_cache`) where it has the
    clip, else computed from the clip's audio (about 40x real time on 2 idle cores)."""
    import scipy.sparse
    import torch

    from workbench.audio import load_audio
    from workbench.models.cochleagram import Cochleagram

    codes, counts = np.unique(ids[:, 0], return_counts=True)
    keep = codes[np.argsort(-counts, kind="stable")[:top]]
    slots = pd.Series(np.arange(len(keep)), index=keep).reindex(ids[:, 0]).fillna(-1).to_numpy().astype(np.int64)
    frames = cache.frames(hook)
    centre = ((frames["start_s"] + frames["end_s"]) / 2).to_numpy()
    coch_rows = {}
    if coch is not None:
        cf = coch.frames(COCHLEAGRAM_HOOK)
        for cid, rows in cf.groupby("clip_id", sort=False).indices.items():
            coch_rows[cid] = rows[np.argsort(cf["frame"].to_numpy()[rows], kind="stable")]
    by_id = {c.id: c for c in corpus}
    model, parts = None, []  # (token rows, cochleagram frames [n, C])
    src = np.full(len(ids), -1, dtype=np.int64)  # row of the cochleagram cache per token frame
    for cid, rows in frames.groupby("clip_id", sort=False).indices.items():
        rows = rows[slots[rows] >= 0]
        if not len(rows):
            continue
        if cid in coch_rows:
            crow = coch_rows[cid]
            src[rows] = crow[_nearest_frame(centre[rows], len(crow))]
        elif cid in by_id:
            model = model or Cochleagram()
            with torch.no_grad():
                c = model(torch.from_numpy(load_audio(corpus.audio_path(by_id[cid]), sr=16000)))[0].T.numpy()
            parts.append((rows, c[_nearest_frame(centre[rows], len(c))]))
    have = np.flatnonzero(src >= 0)
    if len(have):
        order = np.argsort(src[have], kind="stable")  # ascending rows: one sequential read of the memmap
        parts.append((have[order], coch.load(COCHLEAGRAM_HOOK, src[have][order])))
    n_ch = parts[0][1].shape[1] if parts else Cochleagram().n_channels
    sums, n = np.zeros((len(keep), n_ch)), np.zeros(len(keep), dtype=np.int64)
    for rows, x in parts:  # one-hot [kept tokens, frames] @ frames: the per-token sums
        s = slots[rows]
        onehot = scipy.sparse.csr_matrix((np.ones(len(s)), (s, np.arange(len(s)))), shape=(len(keep), len(s)))
        sums += onehot @ x.astype(np.float64)
        n += np.bincount(s, minlength=len(keep))
    return {"codes": keep.astype(np.int64), "counts": n, "mean": (sums / np.maximum(n, 1)[:, None]).astype(np.float32)}


def analyze_cache(cache, out: str | os.PathLike, hook: str | None = None, corpus=None, targets=TARGETS,
                  robust_tests: bool = True, reencode_n: int = 0, max_clips: int = 8, slice_s: float = 1.0,
                  context_s: float = 1.0, cochleagram: bool = True, source=None, device: str = "cpu",
                  seed: int = 0, coch_cache="auto") -> dict[str, Path]:
    """Run every token analysis of ``hook`` (see the module docstring) and write the files to ``out``.

    ``coch_cache``: where the token cochleagrams read cochleagram frames: ``"auto"`` (the cache itself or a
    sibling cache of the same corpus, :func:`cochleagram_cache`), a cache directory, or None (computed
    from the audio)."""
    from probes.tokens.figures import tokens_figure

    hook = integer_hook(cache, hook)
    corpus = corpus if corpus is not None else cache.corpus
    coch = None  # checked before any work: a bad --cochleagram-cache fails at once
    if cochleagram and coch_cache == "auto":
        coch = cochleagram_cache(cache)
    elif cochleagram and coch_cache is not None:
        from workbench.cache import ActivationCache

        coch = ActivationCache.open(coch_cache)
        if COCHLEAGRAM_HOOK not in coch.hooks:
            raise ValueError(f"{coch_cache}: no {COCHLEAGRAM_HOOK} in this cache (hooks: {coch.hooks})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times, paths = {}, {}
    t = time.time()
    ids = metrics.as_2d(np.asarray(cache.acts(hook)))
    use, rf = metrics.usage(ids), metrics.rank_frequency(ids)
    paths["usage"] = write_text(out / "usage.csv", use.to_csv(index=False))
    paths["rank_frequency"] = write_text(out / "rank_frequency.csv", rf.to_csv(index=False))
    times["usage_s"] = time.time() - t
    t = time.time()
    pur = purity_table(cache, hook, ids, targets, seed=seed)
    paths["purity"] = write_text(out / "purity.csv", pur.to_csv(index=False))
    times["purity_s"] = time.time() - t
    cons = stab = None
    if robust_tests:
        from probes.tokens.sources import source_for_cache

        t = time.time()
        source = source if source is not None else source_for_cache(cache, hook, device=device)
        clips = _clip_audio(cache, corpus, source.sample_rate, max_clips, seed)
        times["load_model_s"] = time.time() - t
        t = time.time()
        cons = robust.consistency(source, clips, slice_s=slice_s, context_s=context_s, seed=seed)
        paths["consistency"] = write_text(out / "consistency.csv", cons.to_csv(index=False))
        times["consistency_s"] = time.time() - t
        t = time.time()
        stab = robust.stability(source, clips, seed=seed)
        if reencode_n and source.decode is not None:
            stab = pd.concat([stab, robust.reencode(source, clips, n=reencode_n)], ignore_index=True)
        elif reencode_n:
            logger.info("%s: no decoder for this token source; re-encoding skipped", cache.root)
        paths["stability"] = write_text(out / "stability.csv", stab.to_csv(index=False))
        times["stability_s"] = time.time() - t
    if cochleagram:
        t = time.time()
        tc = token_cochleagrams(cache, hook, ids, corpus, coch=coch)
        path = out / "token_cochleagrams.npz"
        from workbench.atomic import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **tc)
        paths["token_cochleagrams"] = path
        times["cochleagram_s"] = time.time() - t
    summary = {"cache": str(Path(cache.root).resolve()), "hook": hook, "source": cache.meta["model"]["spec"],
               "units": cache.meta.get("units"), "frames": len(ids), "codebooks": int(ids.shape[1]),
               "clips": len(cache.clip_ids), "frame_rate": cache.frame_rate(hook),
               "usage": use.to_dict("records"), "purity": pur.to_dict("records"),
               "consistency": None if cons is None else cons.to_dict("records"),
               "stability": None if stab is None else stab.to_dict("records"),
               "cochleagram_cache": None if coch is None else str(Path(coch.root).resolve()),
               "times_s": {k: round(v, 2) for k, v in times.items()}}
    paths["summary"] = write_json(out / "summary.json", _clean(summary), indent=2)
    paths["figure"] = tokens_figure(rf, pur, stab, out / "tokens.html", title=f"{summary['source']} · {hook}")
    return paths


def headline(summary: dict) -> dict:
    """One row of the comparison table from a ``summary.json``: codebook 0's figures (and the consistency
    averaged over codebooks, ``consistency_mean``)."""
    row = {"source": summary["source"], "hook": summary["hook"], "frames": summary["frames"],
           "codebooks": summary["codebooks"], "frame_rate": summary["frame_rate"]}
    u = pd.DataFrame(summary["usage"])
    row.update(codes_used=int(u["codes_used"].iloc[0]), entropy_bits=float(u["entropy_bits"].iloc[0]),
               perplexity=float(u["perplexity"].iloc[0]))
    p = pd.DataFrame(summary["purity"])
    for target in TARGETS:
        g = p[(p.get("target") == target) & (p.get("codebook") == 0)] if len(p) else p
        if len(g):
            for col in ("purity", "purity_chance", "mi_bits", "mi_norm"):
                v = g[col].iloc[0]
                row[f"{target}_{col}"] = float("nan") if v is None else float(v)
    if summary.get("consistency"):
        c = pd.DataFrame(summary["consistency"])
        row["consistency"] = float(c["consistency"].iloc[0])
        row["consistency_mean"] = float(c["consistency"].mean())  # over codebooks (RVQ: deeper ones drift more)
    if summary.get("stability"):
        s = pd.DataFrame(summary["stability"])
        for test, g in s[s["codebook"] == 0].groupby("test", sort=False):
            row[f"ued_{test}"] = float(g["ued"].iloc[0])
    return row


def compare(dirs, out: str | os.PathLike | None = None) -> pd.DataFrame:
    """The comparison table across token analyses (one ``summary.json`` per directory)."""
    from workbench.atomic import read_json

    rows = []
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a `workbench tokens analyze` output (no summary.json)")
        rows.append({"analysis": Path(d).name, **headline(read_json(path))})
    df = pd.DataFrame(rows)
    if out is not None:
        write_text(Path(out), df.to_csv(index=False))
    return df
