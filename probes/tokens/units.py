"""Discrete units (HuBERT-style k-means) of any cached float hook, written as a token cache.

:func:`fit_units` fits scikit-learn ``MiniBatchKMeans`` on (a seeded sample of) a hook's frames
and assigns every frame its nearest centroid; :func:`write_token_cache` writes integer tracks as
an activation cache that shares the source cache's frame table and corpus, so every reader
(``tokens analyze``, probes, the app) sees it like any integer-hook cache:

::

    UNITS/cache.json        model: {"spec": "units:<k>:<source spec>", ...}; hooks: ["units.hook_ids"];
                            hook_dtypes int32; units: {source_cache, source_spec, source_hook, k, ...}
    UNITS/hooks/units.hook_ids/acts_g0001.bin     int32 [N, 1]
    UNITS/frames/<group>_g0001.parquet             the source hook's frame table (copied)
    UNITS/centroids.npy                            float32 [k, D]: re-encodes audio (UnitSource)

Example
-------
>>> from workbench.cache import ActivationCache                                       # doctest: +SKIP
>>> src = ActivationCache.open("work/caches/whisper")                                 # doctest: +SKIP
>>> ids, cents, info = fit_units(src, "encoder.blocks.2.hook_resid_post", k=500)     # doctest: +SKIP
>>> write_token_cache(src, "encoder.blocks.2.hook_resid_post", ids, "work/caches/units", centroids=cents, units=info)  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import time
from pathlib import Path

import numpy as np

from workbench.atomic import atomic_path, write_json

__all__ = ["UNIT_HOOK", "fit_units", "load_centroids", "write_token_cache"]

UNIT_HOOK = "units.hook_ids"
CENTROIDS = "centroids.npy"


def fit_units(cache, hook: str, k: int = 500, max_frames: int = 200_000, seed: int = 0, batch_size: int = 4096,
              rows: np.ndarray | None = None, verbose: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """k-means units of ``hook``: ``(ids int32 [N], centroids float32 [k, D], info)``.

    Fitted on at most ``max_frames`` frames (a seeded sample of ``rows``, default all), then
    every frame of the cache is assigned. ``info`` records the settings and the fit's inertia.
    """
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    from probes.tokens.sources import nearest

    if cache.hook_dtype(hook) == "int32":
        raise ValueError(f"{hook!r} of {cache.root} is already an integer track: analyze it directly")
    n = cache.n_frames(hook)
    pool = np.arange(n) if rows is None else np.asarray(rows)
    if len(pool) < k:
        raise ValueError(f"{hook!r} of {cache.root} has {len(pool)} frames, fewer than k={k} units")
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(pool, size=min(max_frames, len(pool)), replace=False))
    x = cache.load(hook, fit_rows).astype(np.float32)
    t0 = time.time()
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=batch_size, n_init=1, max_iter=100,
                         init="k-means++", init_size=min(len(x), 3 * k), verbose=int(verbose))
    with threadpool_limits(2) if os.cpu_count() and os.cpu_count() > 2 else contextlib.nullcontext():
        km.fit(x)
    cents = km.cluster_centers_.astype(np.float32)
    ids = np.empty(n, dtype=np.int32)
    step = 65536
    for i in range(0, n, step):
        ids[i : i + step] = nearest(cache.load(hook, np.arange(i, min(n, i + step))), cents)
    info = {"k": int(k), "seed": int(seed), "fit_frames": len(x), "inertia": float(km.inertia_),
            "fit_seconds": round(time.time() - t0, 2), "method": "sklearn MiniBatchKMeans (k-means++)"}
    return ids, cents, info


def write_token_cache(src, hook: str, ids: np.ndarray, out: str | os.PathLike, centroids: np.ndarray | None = None,
                      units: dict | None = None, name: str = UNIT_HOOK) -> Path:
    """Write ``ids`` ``[N]`` / ``[N, K]`` (one row per frame of ``hook`` in ``src``) as a cache with one
    integer hook ``name``, sharing ``src``'s frame table and corpus. Returns the cache directory."""
    from workbench.cache.store import CACHE_JSON, CORPUS_JSONL, INDEX_JSON
    from workbench.cache.verify import file_record

    ids = np.asarray(ids)
    ids = (ids[:, None] if ids.ndim == 1 else ids).astype(np.int32)
    if len(ids) != src.n_frames(hook):
        raise ValueError(f"{len(ids)} ids for {src.n_frames(hook)} frames of {hook!r} in {src.root}")
    out = Path(out)
    if (out / CACHE_JSON).exists() or (out.is_dir() and any(out.iterdir())):
        raise FileExistsError(f"{out} is not empty: choose a new --out (a token cache is written once)")
    out.mkdir(parents=True, exist_ok=True)
    meta = copy.deepcopy(src.meta)
    group = meta["hook_info"][hook]["frame_table"]
    meta["hooks"] = [name]
    meta["hook_info"] = {name: {**meta["hook_info"][hook], "frame_table": group}}
    meta["frame_rates"] = {name: meta["hook_info"][name]["frame_rate"]}
    meta["hook_dtypes"] = {name: "int32"}
    meta["frame_tables"] = {group: {**meta["frame_tables"][group], "hooks": [name]}}
    src_spec = src.meta["model"]["spec"]
    if units is not None:
        meta["model"] = {**meta["model"], "spec": f"units:{units.get('k')}:{src_spec}#{hook}", "name": "units"}
        meta["units"] = {**units, "source_cache": str(Path(src.root).resolve()), "source_spec": src_spec,
                         "source_hook": hook}
    hook_dir = out / "hooks" / name
    hook_dir.mkdir(parents=True, exist_ok=True)
    acts = hook_dir / "acts_g0001.bin"
    with atomic_path(acts) as tmp:
        ids.tofile(tmp)
    (out / "frames").mkdir(exist_ok=True)
    final_src = src._index["final"]
    frames = out / "frames" / f"{group}_g0001.parquet"
    with atomic_path(frames) as tmp:
        shutil.copyfile(src._store.abs(final_src["frames"][group]["file"]), tmp)
    with atomic_path(out / CORPUS_JSONL) as tmp:
        shutil.copyfile(Path(src.root) / CORPUS_JSONL, tmp)
    if centroids is not None:
        with atomic_path(out / CENTROIDS) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(centroids, np.float32))
    def rel(p: Path) -> str:
        return str(p.relative_to(out))

    final = {"clips": list(final_src["clips"]), "clip_rows": {group: list(final_src["clip_rows"][group])},
             "hooks": {name: {"file": rel(acts), "rows": len(ids), "d_model": int(ids.shape[1]),
                              **file_record(acts)}},
             "frames": {group: {"file": rel(frames), "rows": len(ids), **file_record(frames)}}}
    write_json(out / CACHE_JSON, meta, indent=2)
    write_json(out / INDEX_JSON, {"format": src._index.get("format", 1), "generation": 1, "final": final,
                                  "pieces": [], "failed": dict(src._index.get("failed", {}))})
    return out


def load_centroids(root: str | os.PathLike) -> np.ndarray:
    path = Path(root) / CENTROIDS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the unit cache has no centroids (it cannot re-encode audio)")
    return np.load(path)
