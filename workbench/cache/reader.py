"""Read an activation cache: memory-mapped activations, frame tables, shuffled batches.

Example
-------
>>> cache = ActivationCache.open("work/cache")                         # doctest: +SKIP
>>> hook = "encoder.blocks.3.hook_resid_post"
>>> X = cache.acts(hook)                   # np.memmap [N, D] float16   # doctest: +SKIP
>>> ids = cache.acts("tokens.hook_ids")    # integer hooks: exact int32  # doctest: +SKIP
>>> phones = cache.labels("phones", hook)  # label at each frame centre # doctest: +SKIP
>>> speech = cache.select(hook, domain="speech")                        # doctest: +SKIP
>>> for batch in cache.batches(hook, 4096, rows=speech):              # doctest: +SKIP
...     ...                                # torch.float32 [4096, D], shuffled across clips
"""
from __future__ import annotations

import json
import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from workbench.atomic import read_json
from workbench.cache import frames as ft
from workbench.cache.store import CACHE_JSON, CORPUS_JSONL, Store, hook_dtypes, hook_storage_dtype
from workbench.corpus.types import Clip, Corpus
from workbench.numeric import bf16_bits_to_float32

logger = logging.getLogger(__name__)

_NORM_SAMPLE = 20_000  # frames used to estimate the median norm
_CHUNK_ROWS = 1 << 16  # rows read per chunk by batches(): bounds memory


class ActivationCache:
    """A finished activation cache directory (see :mod:`workbench.cache.store` for the layout)."""

    def __init__(self, root: str | os.PathLike, meta: dict[str, Any], index: dict[str, Any]) -> None:
        self.root = Path(root)
        self.meta = meta
        self._index = index
        self._store = Store(self.root)
        self._frames: dict[str, Any] = {}
        self._sdtypes = {h: hook_storage_dtype(meta, h) for h in meta["hooks"]}

    # --- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike, verify: bool = False) -> "ActivationCache":
        """Open the cache in directory ``root`` (the last merged state of its build).

        Checks that every file of the merged data exists with the size the index records (one
        ``stat`` each) and, with ``verify``, its sha256 (reads everything); damage raises
        :class:`~workbench.cache.verify.CacheDamagedError` naming the file.
        """
        from workbench.cache.verify import find_damage, raise_if_damaged

        root = Path(root)
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"{root} is a file, not an activation cache folder")
        if not (root / CACHE_JSON).is_file():
            raise FileNotFoundError(f"{root} is not an activation cache (no {CACHE_JSON})")
        store = Store(root)
        meta = read_json(root / CACHE_JSON)
        index = store.read_index()
        if not index.get("final"):
            raise RuntimeError(
                f"cache {root} has no merged data yet (its build was interrupted before finishing a batch); "
                "rerun `workbench cache` with the same arguments to continue it"
            )
        raise_if_damaged(root, find_damage(store, meta, {"final": index["final"], "pieces": []}, checksums=verify))
        pending = len(index["pieces"]) + len(store.pending_records())
        if pending:
            logger.warning("cache %s: %d batch(es) written after the last merge are not visible; rerun the "
                           "build with the same arguments to merge them", root, pending)
        return cls(root, meta, index)

    def __repr__(self) -> str:
        return (f"ActivationCache({str(self.root)!r}, model={self.meta['model']['spec']!r}, "
                f"hooks={len(self.hooks)}, frames={self.n_frames(self.hooks[0]) if self.hooks else 0}, "
                f"dtype={self.dtype})")

    # --- description -----------------------------------------------------------------------------
    @property
    def hooks(self) -> list[str]:
        return list(self.meta["hooks"])

    @property
    def dtype(self) -> str:
        """The cache's float dtype (integer hooks are stored as int32, see :meth:`hook_dtype`)."""
        return self.meta["dtype"]

    def hook_dtype(self, hook: str) -> str:
        """Storage dtype of ``hook``: the cache dtype, or ``"int32"`` for integer hooks (ids, codes)."""
        self._hook(hook)
        return hook_dtypes(self.meta)[hook]

    @property
    def clip_ids(self) -> list[str]:
        """Clips with cached frames, in frame-table order (corpus order)."""
        return list(self._index["final"]["clips"])

    @property
    def skipped(self) -> dict[str, str]:
        """Clips that could not be cached: ``{clip_id: error}``."""
        return dict(self._index["failed"])

    def _hook(self, hook: str) -> dict[str, Any]:
        try:
            return self._index["final"]["hooks"][hook]
        except KeyError:
            raise KeyError(f"hook {hook!r} is not in cache {self.root}; cached hooks: {self.hooks}") from None

    def d_model(self, hook: str) -> int:
        return int(self._hook(hook)["d_model"])

    def n_frames(self, hook: str) -> int:
        return int(self._hook(hook)["rows"])

    def frame_rate(self, hook: str) -> float:
        self._hook(hook)
        return float(self.meta["hook_info"][hook]["frame_rate"])

    def info(self) -> dict[str, Any]:
        """What ``workbench cache-info`` prints."""
        summary_path = self.root / "summary.json"
        return {
            "root": str(self.root),
            "model": self.meta["model"],
            "dtype": self.dtype,
            "corpus": self.meta["corpus"],
            "complete": self.meta.get("complete"),
            "hooks": {h: {"frames": self.n_frames(h), "d_model": self.d_model(h), "frame_rate": self.frame_rate(h),
                          "dtype": self.hook_dtype(h)} for h in self.hooks},
            "clips": len(self.clip_ids),
            "skipped": len(self.skipped),
            "summary": read_json(summary_path) if summary_path.exists() else None,
        }

    # --- activations -----------------------------------------------------------------------------
    def acts(self, hook: str, mode: str = "r") -> np.ndarray:
        """``np.memmap [N, D]`` of raw values: float16, or uint16 bit patterns for bfloat16 caches;
        int32 (exact) for integer hooks such as token ids and codec codes."""
        info = self._hook(hook)
        n, d = int(info["rows"]), int(info["d_model"])
        sdtype = self._sdtypes[hook]
        if n == 0:
            return np.zeros((0, d), dtype=sdtype)
        return np.memmap(self._store.abs(info["file"]), dtype=sdtype, mode=mode, shape=(n, d))

    def acts_torch(self, hook: str) -> torch.Tensor:
        """``torch.Tensor [N, D]`` in the hook's storage dtype (bfloat16 / float16 / int32), sharing the
        memory map (copy-on-write, no read)."""
        arr = self.acts(hook, mode="c")
        t = torch.from_numpy(arr)
        return t.view(torch.bfloat16) if arr.dtype == np.uint16 else t

    def _gather(self, hook: str, rows: np.ndarray) -> np.ndarray:
        """Raw rows in the given order, read in sorted order for disk locality."""
        mm = self.acts(hook)
        if len(rows) == 0:
            return np.zeros((0, mm.shape[1]), dtype=mm.dtype)
        if rows[-1] - rows[0] + 1 == len(rows) and np.all(np.diff(rows) == 1):
            return np.asarray(mm[rows[0] : rows[-1] + 1])
        order = np.argsort(rows, kind="stable")
        data = mm[rows[order]]
        out = np.empty_like(data)
        out[order] = data
        return out

    @staticmethod
    def _to_float32(raw: np.ndarray) -> np.ndarray:
        """Raw rows -> float32 (exact: bf16 bits, fp16, and int32 ids/codes below 2**24)."""
        return bf16_bits_to_float32(raw) if raw.dtype == np.uint16 else raw.astype(np.float32)

    def _check_rows(self, hook: str, rows: Iterable[int] | np.ndarray | None) -> np.ndarray:
        n = self.n_frames(hook)
        if rows is None:
            return np.arange(n, dtype=np.int64)
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (n,):
                raise ValueError(f"boolean rows must have shape ({n},), got {rows.shape}")
            return np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"rows out of range for {hook!r} with {n} frames: [{rows.min()}, {rows.max()}]")
        return rows

    def load(self, hook: str, rows: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """``float32 [len(rows), D]`` copy of ``rows`` (all rows if None) in the given order (integer
        hooks: their exact values as floats)."""
        rows = self._check_rows(hook, rows)
        out = np.empty((len(rows), self.d_model(hook)), dtype=np.float32)
        for a in range(0, len(rows), _CHUNK_ROWS):
            out[a : a + _CHUNK_ROWS] = self._to_float32(self._gather(hook, rows[a : a + _CHUNK_ROWS]))
        return out

    def frame_centres(self, hook: str) -> np.ndarray:
        """Centre (seconds, within its clip) of each frame of ``hook``: the frame table's
        ``(start_s + end_s) / 2`` (:class:`workbench.conventions.FrameGrid`; caches written before
        the frame-centre fix label Whisper frames 10 ms late)."""
        f = self.frames(hook)
        return ((f["start_s"] + f["end_s"]) / 2).to_numpy(dtype=np.float64)

    def norm_sample(self, hook: str, rows: np.ndarray | None = None, sample: int = _NORM_SAMPLE,
                    seed: int = 0) -> np.ndarray:
        """L2 norms of up to ``sample`` random frames (of ``rows``), float64."""
        rows = self._check_rows(hook, rows)
        if len(rows) == 0:
            return np.zeros(0)
        rng = np.random.default_rng(seed)
        pick = rows if len(rows) <= sample else rng.choice(rows, size=sample, replace=False)
        x = self._to_float32(self._gather(hook, np.sort(pick)))
        return np.linalg.norm(x.astype(np.float64), axis=1)

    def median_norm(self, hook: str, rows: np.ndarray | None = None, sample: int = _NORM_SAMPLE,
                    seed: int = 0) -> float:
        """Median L2 norm of frames, estimated on up to ``sample`` random rows."""
        norms = self.norm_sample(hook, rows, sample, seed)
        return float(np.median(norms)) if len(norms) else float("nan")

    def batches(self, hook: str, batch_size: int, shuffle: bool = True, seed: int = 0,
                max_norm_ratio: float | None = None, max_frames_per_clip: int | None = None,
                rows: Iterable[int] | np.ndarray | None = None, dtype: torch.dtype = torch.float32,
                drop_last: bool = False, chunk_rows: int = _CHUNK_ROWS) -> Iterator[torch.Tensor]:
        """One epoch of ``[batch_size, D]`` tensors, shuffled across all frames (not per clip).

        Memory stays bounded: the row order is drawn up front (8 bytes per frame), then
        ``chunk_rows`` rows at a time are read (sorted for locality), filtered and cut
        into batches. ``max_norm_ratio`` drops frames whose norm exceeds that multiple
        of the median norm (estimated on a sample; None, the default, keeps every frame: a
        reader does not filter unless asked, see :mod:`sae.massive`); ``max_frames_per_clip``
        keeps at most that many (random, with ``shuffle``) frames of each clip; ``rows``
        restricts to a subset (e.g. from :meth:`select`). The last, smaller batch is
        yielded unless ``drop_last``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = np.random.default_rng(seed)
        idx = self._check_rows(hook, rows)
        if max_frames_per_clip is not None:
            idx = self._cap_per_clip(hook, idx, int(max_frames_per_clip), rng if shuffle else None)
        limit = None
        if max_norm_ratio is not None and len(idx):
            limit = float(max_norm_ratio) * self.median_norm(hook, idx, seed=seed)
        if shuffle:
            idx = rng.permutation(idx)
        chunk_rows = max(int(chunk_rows), batch_size)
        carry: torch.Tensor | None = None
        for a in range(0, len(idx), chunk_rows):
            x = torch.from_numpy(self._to_float32(self._gather(hook, idx[a : a + chunk_rows])))
            if limit is not None:
                x = x[torch.linalg.vector_norm(x, dim=1) <= limit]
            if carry is not None and len(carry):
                x = torch.cat([carry, x])
            n_full = len(x) // batch_size * batch_size
            for b in range(0, n_full, batch_size):
                yield x[b : b + batch_size].to(dtype)
            carry = x[n_full:]
        if carry is not None and len(carry) and not drop_last:
            yield carry.to(dtype)

    def _cap_per_clip(self, hook: str, idx: np.ndarray, k: int, rng: np.random.Generator | None) -> np.ndarray:
        """Keep at most ``k`` of each clip's rows in ``idx`` (the first k, or a random k with ``rng``)."""
        if k < 1:
            raise ValueError(f"max_frames_per_clip must be >= 1, got {k}")
        codes = self._clip_codes(hook)[idx]
        order = rng.permutation(len(idx)) if rng is not None else np.arange(len(idx))
        c = codes[order]
        by_clip = np.argsort(c, kind="stable")
        cs = c[by_clip]
        starts = np.r_[0, np.flatnonzero(np.diff(cs)) + 1]
        rank = np.arange(len(cs)) - np.repeat(starts, np.diff(np.r_[starts, len(cs)]))
        keep = np.zeros(len(idx), dtype=bool)
        keep[order[by_clip[rank < k]]] = True
        return idx[keep]

    def _clip_codes(self, hook: str) -> np.ndarray:
        group = self.meta["hook_info"][hook]["frame_table"]
        rows = self._index["final"]["clip_rows"][group]
        return np.repeat(np.arange(len(rows)), rows)

    # --- frame table -----------------------------------------------------------------------------
    def _group(self, hook: str | None) -> str:
        hook = self.hooks[0] if hook is None else hook
        self._hook(hook)  # a clear KeyError for unknown hooks
        return self.meta["hook_info"][hook]["frame_table"]

    def frames(self, hook: str | None = None):
        """Frame table (pandas) whose row i describes ``acts(hook)[i]``; ``hook`` None = first hook."""
        group = self._group(hook)
        if group not in self._frames:
            schema = ft.FrameSchema.from_json(self.meta["frame_schema"])
            info = self._index["final"]["frames"][group]
            paths = [self._store.abs(info["file"])] if info["file"] else []
            self._frames[group] = ft.to_pandas(ft.read_table(paths, schema))
        return self._frames[group]

    def labels(self, tier: str, hook: str | None = None) -> np.ndarray:
        """``np.ndarray[object]`` of the ``tier`` column (None where no segment covers the frame centre)."""
        df = self.frames(hook)
        col = ft.FrameSchema.from_json(self.meta["frame_schema"]).tier_column(tier)
        col = col if col in df.columns else tier
        if col not in df.columns:
            raise KeyError(f"no column {tier!r} in the frame table of {self.root}; columns: {list(df.columns)}")
        return df[col].to_numpy(dtype=object)

    def select(self, hook: str | None = None, domain: str | Iterable[str] | None = None,
               clips: Iterable[str] | None = None) -> np.ndarray:
        """Row indices (int64, ascending) of frames in ``domain`` (one or several) and/or ``clips``."""
        df = self.frames(hook)
        mask = np.ones(len(df), dtype=bool)
        if domain is not None:
            wanted = {domain} if isinstance(domain, str) else set(domain)
            have = set(df["domain"].dropna().unique())
            if not wanted & have:
                raise ValueError(f"no frames with domain {sorted(wanted)} in {self.root}; domains: {sorted(have)}")
            mask &= df["domain"].isin(wanted).to_numpy()
        if clips is not None:
            wanted = {clips} if isinstance(clips, str) else set(clips)
            missing = wanted - set(self.clip_ids)
            if missing:
                raise ValueError(f"clip ids not in cache {self.root}: {sorted(missing)[:5]}"
                                 f"{' ...' if len(missing) > 5 else ''}")
            mask &= df["clip_id"].isin(wanted).to_numpy()
        return np.flatnonzero(mask).astype(np.int64)

    @cached_property
    def corpus(self) -> Corpus:
        """The corpus (clips with tiers) this cache was built from."""
        path = self.root / CORPUS_JSONL
        clips = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        clips.append(Clip.from_dict(json.loads(line)))
                    except (ValueError, KeyError, TypeError) as e:
                        raise ValueError(f"{path}:{lineno}: damaged corpus record ({type(e).__name__}: {e})") from None
        return Corpus(clips, root=self.meta["corpus"]["root"])
