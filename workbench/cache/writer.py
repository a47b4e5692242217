"""Build an activation cache: :func:`build_cache` (also ``workbench cache``).

Clips are processed in batches of about ``batch_seconds`` of audio. A batch's
activations are converted to the cache dtype (int32 for the model's integer hooks: token
ids, codes) in one pass into one array per hook and
written with one plain file write per hook; its frame table part and, last, its commit
record follow (see :mod:`workbench.cache.store`). The previous batch is written on a
background thread (mostly waiting for fsync) and, with ``overlap`` (GPU, or spare CPU
cores), the next batch's audio is decoded on another, so the model forward is the only
thing the main thread waits for.

Example
-------
>>> from workbench.models import load
>>> from workbench.corpus import load_corpus
>>> cache = build_cache(load("whisper-tiny.en"), load_corpus("data/manifest.jsonl"),
...                     "encoder.blocks.*.hook_resid_post", "work/cache")   # doctest: +SKIP
>>> cache.n_frames("encoder.blocks.3.hook_resid_post")                        # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.cache import frames as ft
from workbench.cache.distributed import Dist
from workbench.cache.verify import bytes_record, file_record
from workbench.cache.meta import make_meta, prepare_dir, finalize, DirLock
from workbench.cache.store import (
    INT_DTYPE, Store, hook_dtypes, is_foreign_dir, maybe_stall, storage_dtype, write_bytes_atomic, write_json_atomic,
)
from workbench.corpus.types import Clip, Corpus
from workbench.models.base import AudioModel

logger = logging.getLogger(__name__)
#: the largest finite float16
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass
class LoadedBatch:
    seq: int
    clips: list[Clip] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def n_clips(self) -> int:
        return len(self.clips) + len(self.failed)


def build_cache(
    model: AudioModel,
    corpus: Corpus,
    hooks: str | Sequence[str],
    out: str | os.PathLike,
    dtype: str = "float16",
    batch_seconds: float = 60.0,
    max_clips: int | None = None,
    strict: bool = False,
    verbose: bool = True,
    *,
    max_windows: int = 8,
    overlap: bool | None = None,
    verify: bool = False,
):
    """Cache ``hooks`` (globs allowed) of ``model`` over ``corpus`` into directory ``out``.

    Resumable: rerunning with the same model, hooks, dtype and corpus continues where a
    killed run stopped; a different corpus/model/hooks/dtype is refused with the reason.
    ``max_clips`` caches the first N clips of the corpus (a later run may raise it).
    Unreadable clips are logged to ``errors.jsonl`` and skipped unless ``strict``; a skipped clip is
    not counted as done: the cache stays incomplete (``complete: false``) and a rerun retries it.
    Float activations beyond float16's range (|x| > 65504) are refused with a ``ValueError`` naming
    the hook and clip instead of being stored as inf: use ``dtype="bfloat16"`` (float32's range).
    Under torchrun each rank caches a contiguous share of the clips (see
    :mod:`workbench.cache.distributed`). Batches are written on a background thread;
    ``overlap`` also decodes the next batch's audio on one while the model runs (default:
    on accelerators, or when the CPU has cores torch does not use: on a fully used CPU
    a decoding thread stalls torch's own threads instead).
    Damaged files of an earlier run (missing or truncated; with ``verify`` also a wrong
    checksum) are found before resuming and their clips cached again (see
    :mod:`workbench.cache.verify`). An empty corpus, ``max_clips < 1`` or a build in which no
    clip could be cached raise ``ValueError`` instead of leaving a "complete" empty cache.
    Returns the opened :class:`ActivationCache`.
    """
    from workbench.cache.reader import ActivationCache

    storage_dtype(dtype)  # validate early, with a clear message
    if batch_seconds <= 0:
        raise ValueError(f"batch_seconds must be > 0, got {batch_seconds}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1 (or None for all clips), got {max_clips}")
    if not len(corpus):
        raise ValueError(f"the corpus {corpus.root} has no clips: nothing to cache (an empty manifest?)")
    dist = Dist.current()
    store = Store(out)
    names = model.resolve_hooks(hooks)
    meta = make_meta(model, corpus, names, dtype)
    t0 = time.time()
    lock = DirLock(store.root) if dist.is_main else None
    problem, run = None, None
    if dist.is_main:
        try:
            if is_foreign_dir(store.root):  # before the lock file: leave a foreign folder untouched
                raise ValueError(f"{store.root} is not empty and is not an activation cache; choose another --out")
            lock.acquire()
            before = prepare_dir(store, meta, corpus, verify=verify)
            run = uuid.uuid4().hex[:8]
        except Exception as e:  # tell the other ranks before raising here
            problem = e
    msg = dist.broadcast(None if problem is None else f"{type(problem).__name__}: {problem}")
    run = dist.broadcast(run)
    if problem is not None:
        lock.release()
        raise problem
    if msg is not None:
        raise RuntimeError(f"rank 0 could not prepare {store.root}: {msg}")

    done = Store.done_ids(store.read_index())
    target = corpus.clips[:max_clips] if max_clips is not None else corpus.clips
    todo = [c for c in target if c.id not in done]
    known = [c.duration_s for c in todo if c.duration_s]
    fill = float(np.mean(known)) if known else 1.0
    mine = dist.share(todo, weights=[c.duration_s or fill for c in todo])
    if dist.is_main and verbose:
        logger.info("caching %d clips (%d already done) into %s", len(todo), len(target) - len(todo), store.root)
    if overlap is None:
        overlap = model.device.type != "cpu" or (os.cpu_count() or 1) > torch.get_num_threads()
    writer = _BatchWriter(model, corpus, names, meta, store, run, dist, strict, verbose, max_windows, overlap)
    try:
        writer.run(mine, batch_seconds)
    except BaseException:
        if dist.world_size == 1 and dist.is_main:
            # keep what is committed readable; a rerun continues from it
            try:
                finalize(store, meta, corpus, before, t0, verbose=False)
            except Exception as e:  # never hide the original error
                logger.warning("could not merge the batches written so far: %s", e)
            lock.release()
        raise
    dist.barrier()
    summary = None
    if dist.is_main:
        try:
            summary = finalize(store, meta, corpus, before, t0, verbose=verbose)
        finally:
            lock.release()
    dist.barrier()
    if summary is not None and summary["clips_cached"] == 0:
        first = next(iter(summary["skipped"].items()), ("?", "?"))
        raise ValueError(f"no clip could be cached into {store.root}: all {summary['clips_skipped']} failed "
                         f"(see {store.root / 'errors.jsonl'}; e.g. {first[0]}: {first[1]})")
    return ActivationCache.open(store.root)


@torch.inference_mode()
def forward_batch(
    model: AudioModel, audio: list[np.ndarray], names: list[str], max_windows: int = 8
) -> list[dict[str, torch.Tensor]]:
    """``model.run_with_cache(audio, names)``, batching fixed-length windows across clips.

    For models with a window (Whisper: 30 s), ``run_with_cache`` runs each clip on its
    own; here the windows of all clips of a batch run ``max_windows`` at a time, which
    gives the same activations with fewer, larger forwards. Adapters that override
    ``run_with_cache`` keep their own behaviour.
    """
    overridden = type(model).run_with_cache is not AudioModel.run_with_cache
    if not model.max_window_s or overridden or max_windows <= 1:
        return model.run_with_cache(list(audio), names)
    win = int(model.max_window_s * model.sample_rate)
    pieces, owner = [], []
    for i, a in enumerate(audio):
        a = np.asarray(a, dtype=np.float32)
        for s in range(0, max(len(a), 1), win):
            pieces.append(a[s : s + win])
            owner.append(i)
    outs: list[dict[str, torch.Tensor]] = []
    for k in range(0, len(pieces), max_windows):
        outs += model._run_batch(pieces[k : k + max_windows], names)
    per_clip: list[list[dict[str, torch.Tensor]]] = [[] for _ in audio]
    for i, o in zip(owner, outs):
        per_clip[i].append(o)
    return [{h: torch.cat([p[h] for p in ps], dim=0) for h in names} for ps in per_clip]


def iter_batches(model: AudioModel, corpus: Corpus, clips: list[Clip], batch_seconds: float, strict: bool):
    """Load clips into :class:`LoadedBatch` es of about ``batch_seconds`` (bad files recorded)."""
    from workbench.audio import FullScaleWarning, LowRateWarning, load_audio

    batch, seconds, seq = LoadedBatch(0), 0.0, 0
    for clip in clips:
        path = corpus.audio_path(clip)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # e.g. "all silent": legal audio, not our business
                x = load_audio(path, sr=model.sample_rate)
            for w in caught:  # but audio beyond full scale was rescaled, or far below the model's rate: say so
                if issubclass(w.category, (FullScaleWarning, LowRateWarning)):
                    logger.warning("clip %r: %s", clip.id, w.message)
        except Exception as e:
            if strict:
                raise ValueError(f"clip {clip.id!r}: cannot load {path}: {e}") from e
            logger.warning("skipping clip %r: %s", clip.id, e)
            batch.failed[clip.id] = f"{type(e).__name__}: {e}"
        else:
            batch.clips.append(clip)
            batch.audio.append(x)
            seconds += len(x) / model.sample_rate
        if seconds >= batch_seconds:
            yield batch
            seq += 1
            batch, seconds = LoadedBatch(seq), 0.0
    if batch.n_clips:
        yield batch


def prefetch(it: Iterator, depth: int = 1) -> Iterator:
    """Run iterator ``it`` on a background thread, ``depth`` items ahead (errors re-raised here).

    Closing the returned generator (or leaving it) stops and joins the thread: a daemon thread still
    inside torch when the interpreter exits aborts the process ("terminate called without an active
    exception"), so consumers that stop early should call ``.close()``.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(msg) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in it:
                if not put(("ok", item)):
                    return
            put(("ok", end))
        except BaseException as e:  # noqa: BLE001 - forwarded to the consumer
            put(("err", e))

    t = threading.Thread(target=work, daemon=True, name="cache-loader")
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "err":
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        t.join(timeout=120)


class _BatchWriter:
    """Forward and convert on the calling thread; write on a background thread (and decode ahead if overlapping)."""

    def __init__(self, model, corpus, names, meta, store: Store, run: str, dist: Dist, strict, verbose, max_windows,
                 overlap: bool = True):
        self.model, self.corpus, self.names, self.meta = model, corpus, names, meta
        self.store, self.run_id, self.dist, self.strict = store, run, dist, strict
        self.verbose, self.max_windows, self.overlap = verbose, max_windows, overlap
        self.schema = ft.FrameSchema.from_json(meta["frame_schema"])
        self.torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[meta["dtype"]]
        self.sdtype = storage_dtype(meta["dtype"])
        self.int_hooks = {h for h, d in hook_dtypes(meta).items() if d == INT_DTYPE}
        self._warned: set[str] = set()
        self.groups = meta["frame_tables"]
        self.frames_written = 0
        self.bytes_written = 0

    def run(self, clips: list[Clip], batch_seconds: float) -> None:
        bar = tqdm(
            total=len(clips), unit="clip", disable=not (self.verbose and self.dist.is_main),
            desc="cache" if self.dist.world_size == 1 else f"cache rank 0/{self.dist.world_size}",
        )
        t0 = time.time()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer")
        pending: Future | None = None
        batches = iter_batches(self.model, self.corpus, clips, batch_seconds, self.strict)
        try:
            for batch in prefetch(batches) if self.overlap else batches:
                arrays, rows = self._forward(batch)
                self.frames_written += sum(next(iter(rows.values()), []))
                self.bytes_written += sum(a.nbytes for a in arrays.values())
                if pending is not None:
                    pending.result()  # at most one batch in flight: bounded memory
                    pending = None
                # writing is mostly waiting for the disk (fsync): always off the main thread
                pending = pool.submit(self._write, batch, arrays, rows)
                dt = max(time.time() - t0, 1e-9)
                bar.set_postfix(
                    frames_s=f"{self.frames_written / dt:.0f}", MB=f"{self.bytes_written / 2**20:.1f}", refresh=False
                )
                bar.update(batch.n_clips)
            if pending is not None:
                pending.result()
        finally:
            pool.shutdown(wait=True)
            bar.close()

    def _forward(self, batch: LoadedBatch):
        """Activations of the batch as one ``[sum T, D]`` array per hook, in its storage dtype."""
        if not batch.clips:
            return {}, {g: [] for g in self.groups}
        acts = forward_batch(self.model, batch.audio, self.names, self.max_windows)
        rows: dict[str, list[int]] = {}
        for g, info in self.groups.items():
            first = info["hooks"][0]
            rows[g] = [int(a[first].shape[0]) for a in acts]
            for h in info["hooks"][1:]:
                got = [int(a[h].shape[0]) for a in acts]
                if got != rows[g]:
                    raise RuntimeError(f"{self.model.name}: hooks {first} and {h} have the same frame rate "
                                       f"but gave different frame counts {rows[g]} vs {got}")
        arrays = {}
        for h in self.names:
            # Convert straight into one preallocated [sum T, D] array per hook: a single pass over
            # the data (torch.cat + .to would allocate and touch it twice, ~10x slower on CPU).
            flat = [a[h].reshape(a[h].shape[0], -1) for a in acts]
            if h in self.int_hooks:
                arrays[h] = self._to_int32(h, flat)
                continue
            if not flat[0].is_floating_point() and h not in self._warned:
                self._warned.add(h)
                logger.warning("%s: hook %s gives %s values but is not in the model's integer_hooks: they are "
                               "stored as %s (integers above 2048 / 256 get rounded)", self.model.name, h,
                               flat[0].dtype, self.meta["dtype"])
            out = np.empty((sum(len(t) for t in flat), flat[0].shape[1]), dtype=self.sdtype)
            dst = torch.from_numpy(out.view(np.int16)).view(torch.bfloat16) if self.sdtype == np.uint16 \
                else torch.from_numpy(out)
            if self.sdtype == np.float16:
                self._check_fp16_range(h, flat, batch.clips)
            o = 0
            for t in flat:
                if t.device.type != "cpu":
                    t = t.to(self.torch_dtype)  # convert on the accelerator: half the bytes to copy back
                dst[o : o + len(t)].copy_(t)
                o += len(t)
            arrays[h] = out
        return arrays, rows

    def _check_fp16_range(self, hook: str, flat: list[torch.Tensor], clips: list[Clip]) -> None:
        """Refuse values that float16 cannot hold (they would be stored as inf), naming hook and clip."""
        for t, clip in zip(flat, clips):
            if not t.numel():
                continue
            peak = float(torch.linalg.vector_norm(t, ord=float("inf")))  # one pass, no copy
            if not np.isfinite(peak):  # NaN/inf from the model itself are not a range problem: the finite ones are
                finite = t[torch.isfinite(t)]
                peak = float(finite.abs().max()) if finite.numel() else 0.0
            if peak > FP16_MAX:
                raise ValueError(f"{self.model.name}: hook {hook} gives |x| up to {peak:.4g} on clip {clip.id!r}, beyond float16's "
                                 f"range (|x| <= {FP16_MAX:g}): they would be stored as inf. Cache with --dtype "
                                 f"bfloat16 (float32's range) into a new --out")

    def _to_int32(self, hook: str, flat: list[torch.Tensor]) -> np.ndarray:
        """Integer-hook frames as one exact ``int32 [sum T, D]`` array (refuses non-integer or out-of-range values)."""
        out = np.empty((sum(len(t) for t in flat), flat[0].shape[1]), dtype=np.int32)
        dst, o = torch.from_numpy(out), 0
        for t in flat:
            if t.is_floating_point() or t.is_complex():
                raise TypeError(f"{self.model.name}: integer hook {hook} gave {t.dtype} values")
            if t.numel() and (int(t.min()) < -2**31 or int(t.max()) >= 2**31):
                raise OverflowError(f"{self.model.name}: hook {hook} has values outside the int32 range")
            dst[o : o + len(t)].copy_(t)
            o += len(t)
        return out

    def _write(self, batch: LoadedBatch, arrays: dict[str, np.ndarray], rows: dict[str, list[int]]) -> None:
        pid = f"r{self.dist.rank}_{self.run_id}_{batch.seq:05d}"
        rec: dict[str, Any] = {
            "rank": self.dist.rank, "run": self.run_id, "seq": batch.seq,
            "clips": [c.id for c in batch.clips], "clip_rows": rows, "hooks": {}, "frames": {},
            "failed": batch.failed, "audio_s": float(sum(len(a) for a in batch.audio) / self.model.sample_rate),
        }
        for h, arr in arrays.items():
            path = self.store.shard_path(h, pid) if len(arr) else None
            if path is not None:
                write_bytes_atomic(path, arr)
            rec["hooks"][h] = {"file": self.store.rel(path) if path else None, "rows": len(arr),
                               "d_model": int(arr.shape[1]), **(bytes_record(arr) if path else {})}
        for h in self.names:  # a batch of only failed clips still records every hook
            rec["hooks"].setdefault(h, {"file": None, "rows": 0, "d_model": 0})
        for g, info in self.groups.items():
            n = sum(rows.get(g, []))
            path = self.store.part_path(g, pid) if n else None
            if path is not None:
                h0 = info["hooks"][0]
                cols = [ft.clip_columns(c, self.model.frame_times(h0, k), self.schema)
                        for c, k in zip(batch.clips, rows[g])]
                ft.write_table_atomic(ft.to_arrow(cols, self.schema), path)
            rec["frames"][g] = {"file": self.store.rel(path) if path else None, "rows": n,
                                **(file_record(path) if path else {})}
        maybe_stall(self.store.root, "shards", batch.seq)
        write_json_atomic(self.store.progress_path(pid), rec)  # the commit: written last
        maybe_stall(self.store.root, "commit", batch.seq)
