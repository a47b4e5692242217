"""Streaming SAE training (sae.stream) against training from a cache: tokens/s of ``sae.train``.

Three runs on the same clips, hook and recipe:

1. **cache**: ``train(CacheSource)`` over an activation cache (the usual path; the cache is built first);
2. **stream, replayed model**: ``train(StreamSource)`` whose model returns each clip's activations
   from the cache at no cost: the streaming machinery (clip order, per-clip forwards, massive-frame
   filter, shuffle buffer, background thread, per-rank shards) when the model forward is not the
   bottleneck (a fast GPU forward; the issue's target: within 80% of the cache run);
3. **stream, real model** (``--real-tokens``): the model forward on this machine's CPU, which bounds
   the rate at the forward's frames/s (also reported).

Example
-------
$ python benchmarks/sae_stream_throughput.py --cache work/b20/cache --hook encoder.blocks.3.hook_resid_post \\
      --tokens 409600 --real-tokens 40960 --model whisper-tiny.en --out work/b20/stream_bench.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


class ReplayModel:
    """Stands in for an AudioModel: ``run_with_cache`` on a one-sample "clip" holding a clip index
    returns that clip's cached activations (no forward at all)."""

    sample_rate = 16000
    spec = name = "replay"

    def __init__(self, cache, hook: str) -> None:
        self.cache, self.hook = cache, hook
        frames = cache.frames(hook)
        self.rows = {c: np.asarray(r) for c, r in frames.groupby("clip_id", sort=False).indices.items()}
        self.ids = list(self.rows)

    def resolve_hooks(self, hooks):
        return list(hooks)

    def run_with_cache(self, clips, hooks):
        single = isinstance(clips, np.ndarray)
        out = [{h: torch.from_numpy(self.cache.load(self.hook, self.rows[self.ids[int(c[0])]])) for h in hooks}
               for c in ([clips] if single else clips)]
        return out[0] if single else out


def _cfg(tokens: int, args):
    from sae import TrainConfig

    return TrainConfig(expansion=args.expansion, k=args.k, tokens=tokens, batch_size=args.batch_size, seed=0,
                       threads=args.threads)


def _timed_train(data, hooks, cfg) -> dict:
    from sae import train

    t0 = time.perf_counter()
    train(data, hooks, cfg, verbose=False)
    wall = time.perf_counter() - t0
    return {"tokens": cfg.steps * cfg.batch_size, "seconds": wall, "tokens_per_s": cfg.steps * cfg.batch_size / wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--hook", required=True)
    p.add_argument("--tokens", type=int, default=409_600)
    p.add_argument("--real-tokens", type=int, default=0, help="tokens for the real-model streaming run (0: skip)")
    p.add_argument("--model", default=None, help="model spec for the real-model run")
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternate cache / replayed stream runs this many times")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    from sae.data import CacheSource
    from sae.stream import StreamSource
    from workbench.cache import ActivationCache

    cache = ActivationCache.open(args.cache)
    hook = args.hook
    replay = ReplayModel(cache, hook)
    clips = [np.array([i], dtype=np.float32) for i in range(len(replay.ids))]
    res = {"machine": {"cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()}, "cache": str(cache.root),
           "hook": hook, "frames": cache.n_frames(hook), "recipe": vars(args), "cache_runs": [], "stream_replay_runs": []}
    cfg = _cfg(args.tokens, args)
    for _ in range(args.repeats):
        res["cache_runs"].append(_timed_train(CacheSource(cache, [hook], args.batch_size, 0), [hook], cfg))
        src = StreamSource(replay, clips, [hook], args.batch_size, 0)
        res["stream_replay_runs"].append(_timed_train(src, [hook], cfg))
        print(res["cache_runs"][-1], res["stream_replay_runs"][-1], flush=True)
    best = {k: max(r["tokens_per_s"] for r in res[k]) for k in ("cache_runs", "stream_replay_runs")}
    res["cache_tokens_per_s"] = best["cache_runs"]
    res["stream_replay_tokens_per_s"] = best["stream_replay_runs"]
    res["ratio_stream_replay_to_cache"] = best["stream_replay_runs"] / best["cache_runs"]
    if args.real_tokens and args.model:
        import workbench.models

        model = workbench.models.load(args.model)
        corpus = cache.corpus
        src = StreamSource(model, corpus, [hook], args.batch_size, 0)
        t0 = time.perf_counter()
        acts = model.run_with_cache([src._load(i) for i in range(16)], [hook])
        n = sum(len(a[hook]) for a in acts)
        res["model_forward_frames_per_s"] = n / (time.perf_counter() - t0)
        res["stream_real"] = _timed_train(src, [hook], _cfg(args.real_tokens, args))
        res["ratio_stream_real_to_cache"] = res["stream_real"]["tokens_per_s"] / best["cache_runs"]
    res["machine"]["load_avg_end"] = os.getloadavg()
    print(json.dumps({k: v for k, v in res.items() if k not in ("recipe",)}, indent=1, default=str))
    if args.out:
        from workbench.atomic import write_json

        write_json(args.out, res, indent=1, default=str)


if __name__ == "__main__":
    main()
