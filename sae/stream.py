"""Streaming SAE training without a cache: activations straight from the model through a shuffle buffer.

:class:`StreamSource` is a :class:`~sae.data.BatchSource` the trainer consumes like its cache
source: each epoch visits the training clips in a seeded order, runs the model on a few clips at a
time (``clips_per_forward``), drops massive-norm frames the same way the cache source does (norm >
``max_norm_ratio`` x the median norm, estimated once on the first clips), and mixes frames in a
buffer of ``buffer_batches`` batches before emitting shuffled batches. The model runs on a
background thread up to ``prefetch_clips`` clips ahead of the trainer (on a GPU, ``device="cuda"``,
its forward then overlaps the CPU training steps). Held-out clips (a
``holdout.json`` decided as for ``sae train --cache``) never reach the model.

Under torchrun each rank runs the model on *its own* clips (every ``world_size``-th clip of the
epoch's order, starting at its rank) and emits its block of each global batch
(:func:`~workbench.cache.distributed.share_bounds`), so the model's work is split across ranks
rather than repeated. A rank that runs out of clips first starts its next epoch (the steps stay in
lock-step; ranks may sit in different epochs, so a resumed streaming run continues from rank 0's
position and the other ranks restart their epoch).

Example
-------
$ workbench sae train --model whisper-tiny.en --corpus work/corpus --hook encoder.blocks.3.hook_resid_post \\
      --tokens 2000000 --holdout-clips 0.2 --out work/saes/stream
>>> src = StreamSource(model, corpus, ["encoder.blocks.3.hook_resid_post"], batch_size=4096)   # doctest: +SKIP
>>> next(iter(src.epoch(0)))["encoder.blocks.3.hook_resid_post"].shape                        # doctest: +SKIP
torch.Size([4096, 384])
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from sae.data import ModelSource
from workbench.cache.distributed import share_bounds
from workbench.cache.writer import prefetch


class StreamSource(ModelSource):
    """Live model activations for training (module docstring). ``audio``: a corpus or a list of arrays;
    ``clips``: the ids (corpus) or indices (list) to train on, default all."""

    def __init__(self, model, audio, hooks: Sequence[str], batch_size: int, seed: int = 0, clips=None,
                 buffer_batches: int = 16, clips_per_forward: int = 4, max_norm_ratio: float | None = 10.0,
                 norm_sample_clips: int = 8, prefetch_clips: int = 8) -> None:
        super().__init__(model, audio, hooks, batch_size, seed, buffer_batches, clips_per_forward)
        if clips is None:
            self.index = np.arange(len(audio))
        elif hasattr(audio, "audio_path"):
            wanted = set(map(str, clips))
            self.index = np.array([i for i, c in enumerate(audio) if str(c.id) in wanted], dtype=np.int64)
        else:
            self.index = np.asarray(clips, dtype=np.int64)
        if not len(self.index):
            raise ValueError("StreamSource: no clips to train on (all held out?)")
        self.max_norm_ratio = max_norm_ratio
        self.norm_sample_clips = int(norm_sample_clips)
        self.prefetch_clips = int(prefetch_clips)
        self._limit: dict[str, float | None] | None = None
        self.meta = {"source": "model-stream", "model_name": self.meta.get("model_name", ""), "clips": len(self.index),
                     "buffer_frames": self.buffer, "max_norm_ratio": max_norm_ratio}
        self.limits()  # before training starts: train_config.json records the filter

    def limits(self) -> dict[str, float | None]:
        """Per hook: the norm above which a frame is dropped (``max_norm_ratio`` x the median norm of
        the first ``norm_sample_clips`` training clips; the same on every rank). Recorded in
        ``meta["frame_filter"]`` like the cache source's, so ``sae eval`` and ``sae bench`` score and
        splice the SAE on the frames it was trained on (:mod:`sae.massive`)."""
        if self._limit is None:
            if self.max_norm_ratio is None:
                self._limit = {h: None for h in self.hooks}
                self.meta["frame_filter"] = None
            else:
                from sae.massive import describe

                clips = [self._load(int(i)) for i in self.index[: self.norm_sample_clips]]
                acts = self.model.run_with_cache(clips, self.hooks)
                filters = {}
                for h in self.hooks:
                    norms = torch.cat([a[h].float().cpu().reshape(-1, a[h].shape[-1]) for a in acts]).norm(dim=1).numpy()
                    filters[h] = describe(self.max_norm_ratio, float(np.median(norms)), norms)
                self._limit = {h: f["norm_limit"] for h, f in filters.items()}
                self.meta["frame_filter"] = filters
        return self._limit

    def _clip_frames(self, order: np.ndarray) -> Iterator[dict[str, torch.Tensor]]:
        limit = self.limits()
        for a in range(0, len(order), self.clips_per_forward):
            clips = [self._load(int(i)) for i in order[a : a + self.clips_per_forward]]
            for acts in self.model.run_with_cache(clips, self.hooks):
                xs = {h: acts[h].float().cpu().reshape(-1, acts[h].shape[-1]) for h in self.hooks}
                keep = None
                for h, x in xs.items():
                    if limit[h] is not None:
                        ok = x.norm(dim=1) <= limit[h]
                        keep = ok if keep is None else keep & ok
                yield xs if keep is None else {h: x[keep] for h, x in xs.items()}

    def _shuffled(self, frames: Iterator[dict[str, torch.Tensor]], size: int, g: torch.Generator):
        try:
            yield from self._shuffle_buffer(frames, size, g)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:  # stops the model's background thread
                close()

    def _shuffle_buffer(self, frames, size: int, g: torch.Generator):
        pool: dict[str, list[torch.Tensor]] = {h: [] for h in self.hooks}
        held = 0
        buffer = max(self.buffer, 2 * size)
        for fr in frames:
            for h in self.hooks:
                pool[h].append(fr[h])
            held += min(len(t) for t in fr.values())
            if held < buffer:
                continue
            data = {h: torch.cat(pool[h]) for h in self.hooks}
            n = min(len(t) for t in data.values())
            perm = torch.randperm(n, generator=g)
            n_out = (n - buffer // 2) // size * size
            for b in range(0, n_out, size):
                yield {h: data[h][perm[b : b + size]] for h in self.hooks}
            pool = {h: [data[h][perm[n_out:n]]] for h in self.hooks}
            held = n - n_out
        if held >= size:
            data = {h: torch.cat(pool[h]) for h in self.hooks}
            n = min(len(t) for t in data.values())
            perm = torch.randperm(n, generator=g)
            for b in range(0, n // size * size, size):
                yield {h: data[h][perm[b : b + size]] for h in self.hooks}

    def _epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        return self._epoch_part(epoch, 0, 1)

    def _epoch_part(self, epoch: int, rank: int, world_size: int) -> Iterator[dict[str, torch.Tensor]]:
        order = self.index[np.random.default_rng(self.seed * 100_003 + epoch).permutation(len(self.index))]
        mine = order[rank::world_size]
        lo, hi = share_bounds(self.batch_size, rank, world_size)
        g = torch.Generator().manual_seed((self.seed * 100_003 + epoch) * 1009 + rank)
        frames = self._clip_frames(mine)
        if self.prefetch_clips:  # the model runs ahead on a background thread while the trainer steps
            frames = prefetch(frames, depth=self.prefetch_clips)
        return self._shuffled(frames, hi - lo, g)


def stream_source(model_spec: str, corpus_path: str, hooks: Sequence[str], batch_size: int, seed: int = 0,
                  out=None, holdout_fraction: float | None = None, holdout_by: str = "speaker",
                  holdout_file=None, device: str = "cpu", **kw) -> StreamSource:
    """A :class:`StreamSource` for ``sae train --model --corpus``: loads the model and the corpus, decides the
    held-out split like a cache run (written to ``out/holdout.json``) and streams only training clips."""
    from types import SimpleNamespace

    import workbench.models
    from sae.holdout import for_training
    from workbench.corpus import load_corpus

    corpus = load_corpus(corpus_path)
    if not len(corpus):
        raise ValueError(f"--corpus {corpus_path} has no clips: nothing to stream")
    model = workbench.models.load(model_spec, device=device)
    hooks = model.resolve_hooks(list(hooks))
    # the holdout code reads a cache's corpus, clip ids and root: a corpus alone answers the same
    like_cache = SimpleNamespace(corpus=corpus, clip_ids=[c.id for c in corpus], root=corpus_path)
    split = for_training(like_cache, out, holdout_fraction, holdout_by, seed, holdout_file)
    clips = split["train_clips"] if split is not None else None
    return StreamSource(model, corpus, hooks, batch_size, seed, clips=clips, **kw)
