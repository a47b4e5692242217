"""Benchmark: what caching activations costs beyond the model forward. Prints JSON.

On the same clips (``../shared/data`` plus synthetic espeak speech; synthetic only when the
shared data is absent) it times

(a) the bare forward of whisper-tiny.en (real weights) over the clips, audio preloaded,
    with the same window batching the cache uses, outputs discarded;
(b) ``build_cache`` of every encoder block's residual stream
    (``encoder.blocks.*.hook_resid_post``) into a fresh directory: audio loading, forward,
    dtype conversion, shard/frame-table writes, the final merge and summary;
(c) the caching work alone: ``build_cache`` with the forward replaced by a lookup of (a)'s
    outputs. It isolates what caching adds (audio loading, conversion, writes, merge) from
    the forward, so it stays readable when other load makes (a) and (b) noisy.

Each is run ``--repeats`` times, interleaved. Wall-clock and process CPU time (all threads)
are reported as min and median; on a shared machine the minimum is the least disturbed
estimate, and ``overhead`` is the median of the paired ratios b/a (each pair runs back to
back, under the same load). Target: (b) within 10% of (a).

Usage
-----
$ .venv/bin/python benchmarks/cache_throughput.py                      # fp32 model
$ .venv/bin/python benchmarks/cache_throughput.py --model-dtype bfloat16 --threads 1 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from workbench.compute import cpu_name

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WORKBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))




def _corpus(work: Path, n_synth: int):
    from workbench.corpus import Corpus, load_corpus, synth_corpus

    clips, sources = [], []
    if (SHARED / "manifest.jsonl").is_file():
        shared = load_corpus(SHARED)
        for c in shared.clips:  # one corpus, one root: make paths absolute
            c.path = str(shared.audio_path(c).resolve())
        clips += shared.clips
        sources.append(f"{SHARED} ({len(shared)} clips)")
    if n_synth or not clips:
        synth = synth_corpus(max(n_synth, 1), work / "synth", seed=0, verbose=False)
        for c in synth.clips:
            c.path = str(synth.audio_path(c).resolve())
        clips += synth.clips
        sources.append(f"synthetic espeak speech ({len(synth)} clips)")
    return Corpus(clips, root=work), sources


def _key(audio) -> tuple[int, bytes]:
    return len(audio), audio[:64].tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="whisper-tiny.en")
    ap.add_argument("--model-dtype", default=None, choices=["float32", "bfloat16"])
    ap.add_argument("--hooks", default="encoder.blocks.*.hook_resid_post")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"], help="cache dtype")
    ap.add_argument("--synth", type=int, default=16, help="synthetic clips added to the shared data")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-seconds", type=float, default=60.0)
    ap.add_argument("--out", default=None, help="where caches are written (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    from workbench.audio import load_audio
    from workbench.cache import build_cache, forward_batch
    from workbench.models import load

    work = Path(args.out or tempfile.mkdtemp(prefix="cache-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, sources = _corpus(work, args.synth)
    model = load(args.model, dtype=getattr(torch, args.model_dtype) if args.model_dtype else None)
    names = model.resolve_hooks(args.hooks)
    audio = [load_audio(corpus.audio_path(c), sr=model.sample_rate) for c in corpus]
    seconds = sum(len(a) for a in audio) / model.sample_rate

    # the same batches build_cache forms (about batch_seconds of audio each)
    batches, cur, acc = [], [], 0.0
    for a in audio:
        cur.append(a)
        acc += len(a) / model.sample_rate
        if acc >= args.batch_seconds:
            batches.append(cur)
            cur, acc = [], 0.0
    if cur:
        batches.append(cur)

    def bare_forward(keep: dict | None = None) -> int:
        frames = 0
        for b in batches:
            out = forward_batch(model, b, names)
            frames += sum(int(o[names[0]].shape[0]) for o in out)
            if keep is not None:
                keep.update({_key(x): o for x, o in zip(b, out)})
        return frames

    def cache_only(out_dir: Path) -> None:
        import workbench.cache.writer as writer

        real = writer.forward_batch
        writer.forward_batch = lambda _m, clips, _n, *_a, **_k: [outputs[_key(x)] for x in clips]
        try:
            build_cache(model, corpus, names, out_dir, dtype=args.dtype, batch_seconds=args.batch_seconds,
                        verbose=False)
        finally:
            writer.forward_batch = real

    forward_batch(model, audio[:1], names)  # warm-up (allocator, kernels)
    t_fwd, t_cache, c_fwd, c_cache, cache = [], [], [], [], None
    t_only, c_only, outputs = [], [], {}
    for r in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        frames = bare_forward(outputs if r == 0 else None)
        t_fwd.append(time.perf_counter() - t0)
        c_fwd.append(time.process_time() - c0)
        out_dir = work / f"cache_{r}"
        shutil.rmtree(out_dir, ignore_errors=True)
        t0, c0 = time.perf_counter(), time.process_time()
        cache = build_cache(model, corpus, names, out_dir, dtype=args.dtype, batch_seconds=args.batch_seconds,
                            verbose=False)
        t_cache.append(time.perf_counter() - t0)
        c_cache.append(time.process_time() - c0)
        rows = sum(cache.n_frames(h) for h in cache.hooks)
        nbytes = sum(cache.acts(h).nbytes for h in cache.hooks)
        shutil.rmtree(out_dir, ignore_errors=True)
        t0, c0 = time.perf_counter(), time.process_time()
        cache_only(work / f"only_{r}")
        t_only.append(time.perf_counter() - t0)
        c_only.append(time.process_time() - c0)
        shutil.rmtree(work / f"only_{r}", ignore_errors=True)
    a, b = min(t_fwd), min(t_cache)
    assert cache.n_frames(names[0]) == frames, "cache and forward disagree on the frame count"
    result = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "device": str(model.device)},
        "model": args.model, "model_dtype": str(next(model.hf.parameters()).dtype) if hasattr(model, "hf") else None,
        "hooks": names, "cache_dtype": args.dtype, "clips": len(corpus), "audio_s": round(seconds, 2),
        "data": sources, "frames_per_hook": frames, "rows_all_hooks": rows, "bytes_written": nbytes,
        "repeats": args.repeats,
        "a_bare_forward": {"seconds_min": round(a, 3), "seconds_median": round(statistics.median(t_fwd), 3),
                           "runs": [round(x, 3) for x in t_fwd], "cpu_s_runs": [round(x, 3) for x in c_fwd],
                           "frames_per_s": round(frames / a, 1), "audio_x_realtime": round(seconds / a, 1)},
        "b_forward_plus_cache": {"seconds_min": round(b, 3), "seconds_median": round(statistics.median(t_cache), 3),
                                 "runs": [round(x, 3) for x in t_cache], "cpu_s_runs": [round(x, 3) for x in c_cache],
                                 "frames_per_s": round(frames / b, 1), "rows_per_s": round(rows / b, 1),
                                 "MB_per_s": round(nbytes / 2**20 / b, 2), "audio_x_realtime": round(seconds / b, 1)},
        "c_cache_work_only": {"seconds_min": round(min(t_only), 3), "runs": [round(x, 3) for x in t_only],
                              "cpu_s_runs": [round(x, 3) for x in c_only],
                              "fraction_of_forward": round(min(t_only) / a, 4),
                              "cpu_fraction_of_forward": round(min(c_only) / min(c_fwd), 4)},
        # (a) and (b) run back to back share the machine's load: their ratio is the robust figure
        "overhead": round(statistics.median(y / x for x, y in zip(t_fwd, t_cache)) - 1, 4),
        "overhead_of_minima": round(b / a - 1, 4),
        "overhead_cpu": round(statistics.median(y / x for x, y in zip(c_fwd, c_cache)) - 1, 4),
        "target": "b within 10% of a (median of paired b/a)",
        "target_met": statistics.median(y / x for x, y in zip(t_fwd, t_cache)) <= 1.10,
    }
    print(json.dumps(result, indent=1))
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
