"""Where training frames come from: a batch *source* yields ``{hook: Tensor[B, D]}`` epoch by epoch.

Every source is deterministic given ``(seed, epoch)``, so a resumed run can skip to the exact
batch it stopped at. Sources:

- :class:`CacheSource`: shuffled memory-map batches from an :class:`~workbench.cache.ActivationCache`;
- :class:`TensorSource`: in-memory ``{hook: Tensor[N, D]}`` (tests, small experiments);
- :class:`ModelSource`: live activations (``model.run_with_cache`` over corpus clips) through a
  shuffling buffer, for when no cache was written;
- :class:`CallableSource`: any ``fn(epoch) -> iterable`` of ``[B, D]`` tensors or dicts.

Example
-------
>>> src = TensorSource({"h": torch.randn(1000, 8)}, batch_size=100)
>>> next(iter(src.epoch(0)))["h"].shape
torch.Size([100, 8])
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from sae.massive import describe
from workbench.cache.distributed import share_bounds
from workbench.conventions import MASSIVE_RATIO


class BatchSource:
    """Base class: ``hooks``, ``d_model(hook)``, ``epoch(e, skip, part)`` and ``meta`` (provenance).

    A batch is one *global* batch of ``batch_size`` frames. Under data-parallel training each rank
    asks for its ``part=(rank, world_size)``: the rank's contiguous block of every global batch
    (:func:`~workbench.cache.distributed.share_bounds`), so the frames a step sees, and the order of
    steps, do not depend on the number of ranks. Sources that can read rows directly (tensors, a
    cache) read only that block; others (live model, callables) produce the global batch and slice.
    """

    hooks: list[str]
    batch_size: int
    meta: dict[str, Any]

    def d_model(self, hook: str) -> int:
        raise NotImplementedError

    def _epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def _epoch_part(self, epoch: int, rank: int, world_size: int) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self._epoch(epoch):
            yield {h: t[slice(*share_bounds(len(t), rank, world_size))] for h, t in batch.items()}

    def epoch(self, epoch: int, skip: int = 0, part: tuple[int, int] = (0, 1)) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of epoch ``epoch`` (0-based), starting after the first ``skip``; with
        ``part=(rank, world_size)`` only that rank's block of each batch."""
        rank, world_size = part
        it = self._epoch(epoch) if world_size == 1 else self._epoch_part(epoch, rank, world_size)
        return itertools.islice(it, skip, None)


class TensorSource(BatchSource):
    """Shuffled full batches (the ragged tail is dropped) from in-memory ``{hook: [N, D]}``."""

    def __init__(self, data: Mapping[str, torch.Tensor] | torch.Tensor, batch_size: int, seed: int = 0,
                 hook: str = "x") -> None:
        self.data = {hook: data} if isinstance(data, torch.Tensor) else dict(data)
        self.hooks = list(self.data)
        sizes = {h: len(t) for h, t in self.data.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"TensorSource: all hooks need the same number of frames, got {sizes}")
        self.n = next(iter(sizes.values()))
        if self.n < batch_size:
            raise ValueError(f"TensorSource: {self.n} frames is fewer than one batch of {batch_size}")
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.meta = {"source": "tensors", "frames": self.n, "frame_filter": None}

    def d_model(self, hook: str) -> int:
        return int(self.data[hook].shape[1])

    def _epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        return self._epoch_part(epoch, 0, 1)

    def _epoch_part(self, epoch: int, rank: int, world_size: int) -> Iterator[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        lo, hi = share_bounds(self.batch_size, rank, world_size)
        for a in range(0, self.n - self.batch_size + 1, self.batch_size):
            idx = perm[a + lo : a + hi]
            yield {h: t[idx].float() for h, t in self.data.items()}


class CacheSource(BatchSource):
    """Shuffled full batches of frames from an :class:`~workbench.cache.ActivationCache`.

    Each epoch draws one permutation of the rows (``rows`` restricts them) from ``(seed, epoch)``;
    global batch i is the i-th block of ``batch_size`` rows of it, and a rank reads only its own
    block of each batch from the memory map. Frames whose norm exceeds ``max_norm_ratio`` times the
    median norm (estimated once on a sample; None keeps all) are dropped from the batch they fall
    in, so a batch can be a few frames short. The filter is recorded per hook in ``meta``
    (``frame_filter``, written to ``train_config.json``), and ``sae eval`` and the splice treat
    those frames the same way (:mod:`sae.massive`). Hooks with the same number of frames share one frame
    table: they see the same frames in the same order, and a frame dropped for one is dropped for
    all of them.
    """

    def __init__(self, cache, hooks: Sequence[str], batch_size: int, seed: int = 0,
                 rows: np.ndarray | None = None, max_norm_ratio: float | None = MASSIVE_RATIO) -> None:
        missing = [h for h in hooks if h not in cache.hooks]
        if missing:
            raise KeyError(f"hook(s) {missing} not in cache {cache.root}; cached hooks: {cache.hooks}")
        self.cache, self.hooks = cache, list(hooks)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.max_norm_ratio = max_norm_ratio
        for h in self.hooks:
            n = len(self.rows) if self.rows is not None else cache.n_frames(h)
            if n < self.batch_size:
                raise ValueError(f"cache {cache.root} has {n} frames for {h!r}, fewer than one batch of {batch_size}")
        self._groups: dict[int, list[str]] = {}  # frame count -> hooks sharing a frame table
        for h in self.hooks:
            self._groups.setdefault(cache.n_frames(h), []).append(h)
        filters = {}
        for h in self.hooks:
            norms = cache.norm_sample(h, self.rows, seed=seed) if max_norm_ratio is not None else None
            filters[h] = describe(max_norm_ratio, float(np.median(norms)) if norms is not None and len(norms)
                                  else float("nan"), norms)
        self._limit = {h: None if f is None else f["norm_limit"] for h, f in filters.items()}
        self.meta = {"source": "cache", "cache": str(cache.root), "model_name": cache_model_name(cache),
                     "frames": {h: cache.n_frames(h) for h in self.hooks},
                     "frame_filter": None if max_norm_ratio is None else filters}

    def d_model(self, hook: str) -> int:
        return int(self.cache.d_model(hook))

    def n_rows(self, hook: str) -> int:
        return len(self.rows) if self.rows is not None else self.cache.n_frames(hook)

    def _epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        return self._epoch_part(epoch, 0, 1)

    def _epoch_part(self, epoch: int, rank: int, world_size: int) -> Iterator[dict[str, torch.Tensor]]:
        perms = {}
        for n, group in self._groups.items():
            base = self.rows if self.rows is not None else np.arange(n, dtype=np.int64)
            perms[n] = np.random.default_rng(self.seed * 100_003 + epoch).permutation(base)
        lo, hi = share_bounds(self.batch_size, rank, world_size)
        n_batches = min(len(p) // self.batch_size for p in perms.values())
        for b in range(n_batches):
            batch = {}
            for n, group in self._groups.items():
                rows = perms[n][b * self.batch_size + lo : b * self.batch_size + hi]
                xs = {h: torch.from_numpy(self.cache.load(h, rows)) for h in group}
                keep = None
                for h in group:
                    if self._limit[h] is not None:
                        ok = torch.linalg.vector_norm(xs[h], dim=1) <= self._limit[h]
                        keep = ok if keep is None else keep & ok
                batch.update({h: x if keep is None or bool(keep.all()) else x[keep] for h, x in xs.items()})
            yield {h: batch[h] for h in self.hooks}


class ModelSource(BatchSource):
    """Live activations: clips in a seeded order through ``model.run_with_cache``, then a shuffling
    buffer of ``buffer_batches`` batches (half of it is emitted each time it fills).

    ``audio`` is a corpus (clips loaded with :func:`workbench.audio.load_audio`) or a list of 1-D
    float32 arrays at the model's sample rate.
    """

    def __init__(self, model, audio, hooks: Sequence[str], batch_size: int, seed: int = 0,
                 buffer_batches: int = 16, clips_per_forward: int = 4) -> None:
        self.model, self.hooks = model, list(model.resolve_hooks(list(hooks)))
        self.audio, self.batch_size, self.seed = audio, int(batch_size), int(seed)
        self.buffer = max(2, int(buffer_batches)) * self.batch_size
        self.clips_per_forward = int(clips_per_forward)
        self._dims: dict[str, int] = {}
        self.meta = {"source": "model", "model_name": getattr(model, "spec", "") or getattr(model, "name", ""),
                     "frame_filter": None}

    def _load(self, i: int) -> np.ndarray:
        item = self.audio[i]
        if isinstance(item, np.ndarray):
            return item.astype(np.float32, copy=False)
        from workbench.audio import load_audio

        return load_audio(self.audio.audio_path(item), sr=self.model.sample_rate)

    def d_model(self, hook: str) -> int:
        if hook not in self._dims:
            acts = self.model.run_with_cache(self._load(0)[: self.model.sample_rate], [hook])
            self._dims[hook] = int(acts[hook].shape[-1])
        return self._dims[hook]

    def _frames(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        order = np.random.default_rng(self.seed * 100_003 + epoch).permutation(len(self.audio))
        for a in range(0, len(order), self.clips_per_forward):
            clips = [self._load(int(i)) for i in order[a : a + self.clips_per_forward]]
            for acts in self.model.run_with_cache(clips, self.hooks):
                yield {h: acts[h].float().reshape(-1, acts[h].shape[-1]) for h in self.hooks}

    def _epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        pool: dict[str, list[torch.Tensor]] = {h: [] for h in self.hooks}
        size = 0

        def drain(keep: int) -> Iterator[dict[str, torch.Tensor]]:
            nonlocal size
            data = {h: torch.cat(pool[h]) for h in self.hooks}
            n = min(len(t) for t in data.values())  # hooks of one model share frame counts
            perm = torch.randperm(n, generator=g)
            n_out = (n - keep) // self.batch_size * self.batch_size
            for b in range(0, n_out, self.batch_size):
                yield {h: data[h][perm[b : b + self.batch_size]] for h in self.hooks}
            for h in self.hooks:
                pool[h] = [data[h][perm[n_out:n]]]
            size = n - n_out

        for frames in self._frames(epoch):
            for h in self.hooks:
                pool[h].append(frames[h])
            size += min(len(t) for t in frames.values())
            if size >= self.buffer:
                yield from drain(self.buffer // 2)
        if size >= self.batch_size:
            yield from drain(0)


class CallableSource(BatchSource):
    """Wraps ``fn(epoch) -> iterable`` of ``Tensor[B, D]`` (single hook) or ``{hook: Tensor}``."""

    def __init__(self, fn: Callable[[int], Iterable], hooks: Sequence[str], dims: Mapping[str, int],
                 batch_size: int) -> None:
        self.fn, self.hooks, self.dims, self.batch_size = fn, list(hooks), dict(dims), int(batch_size)
        self.meta = {"source": "callable", "frame_filter": None}

    def d_model(self, hook: str) -> int:
        return self.dims[hook]

    def _epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        for b in self.fn(epoch):
            yield {self.hooks[0]: b} if isinstance(b, torch.Tensor) else dict(b)


def cache_model_name(cache) -> str:
    """The model spec a cache was built with (``cache.json``'s ``model.spec``)."""
    model = cache.meta.get("model", "")
    return str(model.get("spec") or model.get("name") or "") if isinstance(model, dict) else str(model or "")


def as_source(data, hooks: Sequence[str] | None, batch_size: int, seed: int = 0,
              max_norm_ratio: float | None = MASSIVE_RATIO) -> BatchSource:
    """Turn a cache, tensors, a source or a callable into a :class:`BatchSource` (``max_norm_ratio``:
    the massive-frame filter of a cache, see :class:`CacheSource`)."""
    if isinstance(data, BatchSource):
        return data
    if hasattr(data, "batches") and hasattr(data, "hooks"):  # an ActivationCache
        return CacheSource(data, hooks or data.hooks, batch_size, seed, max_norm_ratio=max_norm_ratio)
    if isinstance(data, (torch.Tensor, Mapping)):
        if isinstance(data, torch.Tensor) and hooks:
            data = {hooks[0]: data}
        return TensorSource(data, batch_size, seed)
    if callable(data):
        if not hooks:
            raise ValueError("a callable data source needs hooks=[...]")
        first = next(iter(data(0)))
        first = {hooks[0]: first} if isinstance(first, torch.Tensor) else first
        return CallableSource(data, hooks, {h: int(first[h].shape[-1]) for h in hooks}, batch_size)
    raise TypeError(
        f"cannot train on {type(data).__name__}: pass an ActivationCache, a Tensor or {{hook: Tensor}}, "
        "a BatchSource, or a callable epoch -> iterator of batches"
    )
