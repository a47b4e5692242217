"""SAE training throughput as users run it: the real ``workbench sae train`` command end to end
(start-up, cache reading, scale estimate, training, saving) beside the kernel alone, against
dictionary_learning's BatchTopKTrainer (PyPI ``dictionary-learning==0.1.0``) run on the same cache
through the same loader, and against the encoder-matmul limit of this CPU in this dtype, measured
in the same run. d = 384, m = 6144, k = 32, batch 4096 (whisper-tiny.en sizes). Prints one JSON object
with the CPU model, the compute dtype and why it was chosen, and the profile of one training step.

Every trainer uses the same schedule (10% warm-up, linear decay over the last 20%, threshold from
10%) and token budget; 20% of the clips are held out (``--holdout-clips 0.2 --holdout-by clip``)
and FVU is measured on their frames with the batch-top-k rule. ``--dtype`` (default auto) is the
compute dtype of every trainer: bf16 autocast for the baselines only where ours picks bf16.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/sae_throughput.py --cache work/sae/cache_mixed \\
        --hook encoder.blocks.2.hook_resid_post --steps 40
    ... --dtype float32     # what a CPU without native bf16 (AVX2 only) gets from --dtype auto
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sae/__init__.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

D, M, K, BATCH = 384, 6144, 32, 4096


def machine() -> dict:
    from workbench.compute import cpu_bf16_flags

    model = "?"
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cpu_bf16_flags": cpu_bf16_flags(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()}


def _encoder_matmul(dtype: torch.dtype):
    """The dense encoder matmul alone, as the trainer runs it: ``[4096, 385] x [385, 6144]`` (the bias
    rides as a column of ones). Its time bounds any trainer of this size: every step needs it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, D + 1, generator=g).to(dtype)
    w = torch.randn(M, D + 1, generator=g).to(dtype).t()
    out = torch.empty(BATCH, M, dtype=dtype)
    torch.mm(x, w, out=out)
    return lambda: torch.mm(x, w, out=out)


def matmul_limit(dtype: torch.dtype, repeats: int = 7) -> dict:
    """Best and median of ``repeats`` encoder matmuls (:func:`_encoder_matmul`)."""
    mm = _encoder_matmul(dtype)
    times = [_timed(mm) for _ in range(repeats)]
    best, med = min(times), float(np.median(times))
    return {"best_s": best, "median_s": med, "gflop_per_s_best": 2 * BATCH * (D + 1) * M / best / 1e9,
            "tokens_per_s_best": BATCH / best, "tokens_per_s_median": BATCH / med}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fvu(encode_decode, X: torch.Tensor) -> float:
    sse, var = 0.0, float((X - X.mean(0)).pow(2).sum())
    with torch.no_grad():
        for a in range(0, len(X), BATCH):
            x = X[a : a + BATCH]
            sse += float((x - encode_decode(x)).pow(2).sum())
    return sse / var


def schedule(steps: int) -> dict:
    from sae.config import TrainConfig

    cfg = TrainConfig(tokens=steps * BATCH, batch_size=BATCH)
    return {"warmup": cfg.warmup, "decay_start": steps - int(cfg.decay_frac * steps), "threshold_start": cfg.threshold_start}


# --- end to end: the real command ----------------------------------------------------------------
def run_command(cache_dir: str, hook: str, steps: int, dtype: str, threads: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "workbench", "sae", "train", "--cache", cache_dir, "--hook", hook,
           "--expansion", str(M // D), "--k", str(K), "--tokens", str(steps * BATCH), "--batch-size", str(BATCH),
           "--dtype", dtype, "--threads", str(threads), "--holdout-clips", "0.2", "--holdout-by", "clip",
           "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    startup = _timed(lambda: subprocess.run(cmd[:5] + ["--help"], capture_output=True, env=env, check=True))
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    log = [json.loads(x) for x in (out / hook / "training_log.jsonl").read_text().splitlines()]
    conf = json.loads((out / "train_config.json").read_text())
    training = steps * BATCH / log[-1]["tokens_per_s"]  # the step loop, batch reads included
    return {"command": " ".join(["workbench", *cmd[3:]]), "wall_s": wall, "tokens_per_s": steps * BATCH / wall,
            "breakdown_s": {"cli_startup_imports": startup, "training_loop": training,
                            "setup_and_saving": wall - startup - training},
            "training_loop_tokens_per_s": log[-1]["tokens_per_s"], "compute_dtype": conf["compute_dtype"],
            "compute_dtype_reason": conf["compute_dtype_reason"]}


def heldout(cache, hook: str, out: Path) -> tuple[torch.Tensor, np.ndarray]:
    """Held-out frames of the command's split, and the training rows (for the baselines)."""
    from sae.holdout import heldout_clips, load, training_rows

    split = load(out / "holdout.json")
    held = cache.select(hook, clips=heldout_clips(cache.clip_ids, split))
    return torch.from_numpy(cache.load(hook, held)), training_rows(cache, hook, split)


# --- kernel only: this trainer's step on batches already in memory --------------------------------
def run_ours_kernel(batches, held, steps, dtype: torch.dtype, profile: bool) -> dict:
    from sae.config import TrainConfig
    from sae.data import TensorSource
    from sae.train import _init_hook, _train_step

    cfg = TrainConfig(expansion=M // D, k=K, tokens=steps * BATCH, batch_size=BATCH, threads=None)
    st = _init_hook(TensorSource({"h": torch.cat(batches)}, BATCH), "h", cfg, "bench")
    st.scale = 1.0  # batches are pre-scaled for every trainer
    mm = _encoder_matmul(dtype)
    times, mm_times = [], []
    for step, x in enumerate(batches[:steps]):
        mm_times.append(_timed(mm))  # the limit, interleaved: load from other processes hits both alike
        times.append(_timed(lambda: _train_step(st, x, step, cfg, dtype)))
    sae = st.sae.folded(st.scale)
    result = _summary(times, fvu(lambda x: sae(x, "batch_topk"), held))
    mm_med, step_med = float(np.median(mm_times[2:])), float(np.median(times[2:]))
    result["interleaved_encoder_matmul"] = {"median_s": mm_med, "tokens_per_s": BATCH / mm_med,
                                            "median_step_s": step_med, "share_of_limit": mm_med / step_med}
    if profile:
        result["profile_one_step"] = profile_step(st, batches, cfg, dtype, steps)
    return result


def profile_step(st, batches, cfg, dtype, step: int, n: int = 3) -> dict:
    """torch.profiler over ``n`` steps: the trainer's phases and the top operators, per step."""
    from torch.profiler import ProfilerActivity, profile

    from sae.train import _train_step

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(n):
            _train_step(st, batches[i], step, cfg, dtype)
    events = prof.key_averages()
    wall = sum(e.cpu_time_total for e in events if e.key in _TOP_PHASES)
    phases = {e.key: e.cpu_time_total / n / 1e3 for e in events if e.key.startswith("sae.")}
    ops = sorted((e for e in events if not e.key.startswith("sae.")), key=lambda e: -e.self_cpu_time_total)[:12]
    return {"step_ms": wall / n / 1e3, "phases_ms": dict(sorted(phases.items(), key=lambda kv: -kv[1])),
            "top_ops_self_ms": {e.key: e.self_cpu_time_total / n / 1e3 for e in ops}}


_TOP_PHASES = {"sae.forward", "sae.backward", "sae.sum_grads", "sae.optimizer", "sae.statistics"}


# --- dictionary_learning ---------------------------------------------------------------------------
def import_dictionary_learning():
    """Its package __init__ imports nnsight (a language-model tracer, not installed and not used by the
    BatchTopK trainer), so a stub module stands in for it."""
    if "nnsight" not in sys.modules:
        stub = types.ModuleType("nnsight")
        stub.LanguageModel = object
        sys.modules["nnsight"] = stub
    from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer

    return BatchTopKTrainer


def dictionary_learning_trainer(steps: int):
    Trainer = import_dictionary_learning()
    sch = schedule(steps)
    return Trainer(steps=steps, activation_dim=D, dict_size=M, k=K, layer=0, lm_name="bench", device="cpu", seed=0,
                   warmup_steps=sch["warmup"], decay_start=sch["decay_start"], threshold_start_step=sch["threshold_start"])


def run_dictionary_learning_kernel(batches, held, steps, autocast: bool) -> dict:
    try:
        trainer = dictionary_learning_trainer(steps)
    except Exception as e:  # noqa: BLE001 - report why, do not crash the benchmark
        return {"error": f"cannot import dictionary_learning: {type(e).__name__}: {e}"}
    times = []
    for step, x in enumerate(batches[:steps]):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            times.append(_timed(lambda: trainer.update(step, x)))
    ae = trainer.ae
    return _summary(times, fvu(lambda x: ae.decode(ae.encode(x, use_threshold=False)), held))


def run_dictionary_learning_end_to_end(cache, hook, rows, held_raw, steps, autocast: bool) -> dict:
    """dictionary_learning fed from the cache by this workbench's loader (the same rows, order and
    scaling as ``sae train``), timed from trainer construction to the last step, loading included."""
    from sae.data import CacheSource

    t0 = time.perf_counter()
    try:
        trainer = dictionary_learning_trainer(steps)
    except Exception as e:  # noqa: BLE001
        return {"error": f"cannot import dictionary_learning: {type(e).__name__}: {e}"}
    source = CacheSource(cache, [hook], BATCH, seed=0, rows=rows)
    first = next(iter(source.epoch(0)))[hook]
    scale = math.sqrt(D) / float(first.norm(dim=1).mean())  # the trainer has no input scaling of its own
    step, epoch = 0, 0
    while step < steps:
        for batch in source.epoch(epoch):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                trainer.update(step, batch[hook] * scale)
            step += 1
            if step == steps:
                break
        epoch += 1
    wall = time.perf_counter() - t0
    ae = trainer.ae
    return {"wall_s": wall, "tokens_per_s": steps * BATCH / wall,
            "fvu_heldout": fvu(lambda x: ae.decode(ae.encode(x, use_threshold=False)), held_raw * scale)}


def _summary(times, fvu_value) -> dict:
    steady = times[2:] if len(times) > 4 else times  # the first steps include one-off allocations
    return {"tokens_per_s": BATCH * len(steady) / sum(steady), "tokens_per_s_median_step": BATCH / float(np.median(steady)),
            "steps_timed": len(steady), "fvu": fvu_value}


def main() -> None:
    from sae.io import load_sae
    from workbench.cache import ActivationCache
    from workbench.compute import choose_dtype

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="an activation cache with a d=384 hook (whisper-tiny.en)")
    p.add_argument("--hook", default=None)
    p.add_argument("--steps", type=int, default=40, help="token budget = steps * 4096")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dl-kernel-steps", type=int, default=None,
                   help="steps for dictionary_learning's kernel-only run (default --steps)")
    p.add_argument("--skip", nargs="*", default=[], help="parts to skip: command kernel dictionary_learning profile")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    choice = choose_dtype(args.dtype, "cpu")
    bf16 = choice.dtype == torch.bfloat16
    cache = ActivationCache.open(args.cache)
    hook = args.hook or next(h for h in cache.hooks if cache.d_model(h) == D)
    out = {"benchmark": "sae_throughput", "machine": machine(), "compute_dtype": choice.name,
           "compute_dtype_reason": choice.reason, "torch": torch.__version__, "cache": args.cache, "hook": hook,
           "d": D, "m": M, "k": K, "batch_size": BATCH, "token_budget": args.steps * BATCH,
           "encoder_matmul_limit": matmul_limit(choice.dtype), "results": {}}
    r = out["results"]
    work = Path(tempfile.mkdtemp(prefix="sae_bench_"))
    # 1. the real command (it also makes the held-out split every trainer is scored on)
    r["command"] = run_command(args.cache, hook, args.steps, args.dtype, args.threads, work / "cmd")
    held_raw, rows = heldout(cache, hook, work / "cmd")
    sae = load_sae(work / "cmd" / hook)
    r["command"]["fvu_heldout"] = fvu(lambda x: sae(x, "batch_topk"), held_raw)
    r["command"]["fvu_heldout_threshold"] = fvu(lambda x: sae(x, "threshold"), held_raw)
    print(f"command: {r['command']}", file=sys.stderr)
    # 2. kernels on pre-loaded, pre-scaled training batches
    train_x = torch.from_numpy(cache.load(hook, rows[np.random.default_rng(0).permutation(len(rows))]))
    scale = math.sqrt(D) / float(train_x.norm(dim=1).mean())
    train_x, held = train_x * scale, held_raw * scale
    batches = [train_x[(i * BATCH) % (len(train_x) - BATCH + 1):][:BATCH] for i in range(args.steps)]
    if "kernel" not in args.skip:
        r["kernel_ours"] = run_ours_kernel(batches, held, args.steps, choice.dtype, "profile" not in args.skip)
        print(f"kernel_ours: {r['kernel_ours']}", file=sys.stderr)
    if "dictionary_learning" not in args.skip:
        r["dictionary_learning_end_to_end"] = run_dictionary_learning_end_to_end(cache, hook, rows, held_raw,
                                                                                 args.steps, bf16)
        print(f"dictionary_learning_end_to_end: {r['dictionary_learning_end_to_end']}", file=sys.stderr)
        r["dictionary_learning_kernel"] = run_dictionary_learning_kernel(batches, held, args.dl_kernel_steps or args.steps,
                                                                         bf16)
        print(f"dictionary_learning_kernel: {r['dictionary_learning_kernel']}", file=sys.stderr)
    out["summary"] = _targets(out)
    out["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


def _targets(out: dict) -> dict:
    r, limit = out["results"], out["encoder_matmul_limit"]["tokens_per_s_best"]
    s = {"command_vs_kernel": r["command"]["tokens_per_s"] / r["kernel_ours"]["tokens_per_s"] if "kernel_ours" in r else None}
    if "kernel_ours" in r:
        s["kernel_share_of_best_matmul_limit"] = r["kernel_ours"]["tokens_per_s"] / limit
        s["kernel_share_of_interleaved_matmul_limit"] = r["kernel_ours"]["interleaved_encoder_matmul"]["share_of_limit"]
        s["target_50pct_of_matmul_limit"] = s["kernel_share_of_interleaved_matmul_limit"] >= 0.5
    dl = r.get("dictionary_learning_end_to_end", {})
    if "tokens_per_s" in dl:
        s["end_to_end_speedup_vs_dictionary_learning"] = r["command"]["tokens_per_s"] / dl["tokens_per_s"]
        s["target_3x_dictionary_learning_at_equal_or_better_fvu"] = (
            s["end_to_end_speedup_vs_dictionary_learning"] >= 3 and r["command"]["fvu_heldout"] <= dl["fvu_heldout"] + 1e-3)
    dk = r.get("dictionary_learning_kernel", {})
    if "tokens_per_s" in dk and "kernel_ours" in r:
        s["kernel_speedup_vs_dictionary_learning"] = r["kernel_ours"]["tokens_per_s"] / dk["tokens_per_s"]
    return s


if __name__ == "__main__":
    main()
