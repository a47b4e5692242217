"""SAE training throughput: this trainer vs a plain dense implementation of the same recipe vs
dictionary_learning's BatchTopKTrainer (PyPI ``dictionary-learning==0.1.0``), at d=384, m=6144,
k=32, batch 4096 (whisper-tiny.en sizes). Prints one JSON object.

Data: real whisper-tiny.en activations from an activation cache (``--cache DIR --hook H``) when
given, else a Gaussian mixture of the same shape, labelled ``"synthetic"`` in the output. All
three trainers see the same batches (pre-scaled to mean norm sqrt(d)) for the same token budget;
FVU is measured on held-out frames with the batch-top-k rule.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/sae_throughput.py --cache work/cache \\
        --hook encoder.blocks.2.hook_resid_post --steps 40
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import types

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sae/__init__.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

D, M, K, BATCH = 384, 6144, 32, 4096


def load_frames(cache_dir: str | None, hook: str | None, n: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    if cache_dir:
        from workbench.cache import ActivationCache

        cache = ActivationCache.open(cache_dir)
        hook = hook or next(h for h in cache.hooks if cache.d_model(h) == D)
        rows = np.random.default_rng(seed).permutation(cache.n_frames(hook))[:n]
        X = torch.from_numpy(cache.load(hook, np.sort(rows)))
        X = X[torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))]
        return X, f"real activations: {cache.meta.get('model', {}).get('spec', '?')} {hook} ({len(X)} frames of {cache_dir})"
    from sae.synthetic import gaussian_mixture

    return gaussian_mixture(n, D, n_components=512, seed=seed), "synthetic Gaussian mixture (NOT real activations)"


def fvu(encode_decode, X: torch.Tensor) -> float:
    sse, var = 0.0, float((X - X.mean(0)).pow(2).sum())
    with torch.no_grad():
        for a in range(0, len(X), BATCH):
            x = X[a : a + BATCH]
            sse += float((x - encode_decode(x)).pow(2).sum())
    return sse / var


def schedule(steps: int) -> dict:
    return {"warmup": max(1, steps // 10), "decay_start": steps - steps // 5}


# --- 1. this trainer -----------------------------------------------------------------------------
def run_ours(batches, held, steps) -> dict:
    from sae.config import TrainConfig
    from sae.data import TensorSource
    from sae.train import _init_hook, _train_step

    cfg = TrainConfig(expansion=M // D, k=K, tokens=steps * BATCH, batch_size=BATCH, warmup_steps=schedule(steps)["warmup"],
                      threshold_start_step=steps // 2, threads=None)
    st = _init_hook(TensorSource({"h": torch.cat(batches)}, BATCH), "h", cfg, "bench")
    times = []
    for step, x in enumerate(batches[:steps]):
        t = time.perf_counter()
        _train_step(st, x, step, cfg)
        times.append(time.perf_counter() - t)
    sae = st.sae.folded(st.scale)
    return _summary(times, fvu(lambda x: sae(x, "batch_topk"), held))


# --- 2. the same recipe, dense, plain autograd ------------------------------------------------------
class DenseBatchTopK(torch.nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        w = torch.randn(M, D, generator=torch.Generator().manual_seed(seed))
        w /= w.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(w.clone())
        self.W_enc = torch.nn.Parameter(w.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(M))
        self.b_dec = torch.nn.Parameter(torch.zeros(D))

    def forward(self, x):
        pre = torch.relu(torch.nn.functional.linear(x - self.b_dec, self.W_enc, self.b_enc))
        vals, idx = pre.flatten().topk(K * len(x), sorted=False)
        z = torch.zeros_like(pre.flatten()).scatter(0, idx, vals).view_as(pre)
        return z @ self.W_dec + self.b_dec, pre


def run_dense(batches, held, steps) -> dict:
    from sae.train import geometric_median

    model = DenseBatchTopK()
    with torch.no_grad():
        model.b_dec.copy_(geometric_median(batches[0]))
    opt = torch.optim.Adam(model.parameters(), lr=2e-4 / math.sqrt(M / 2**14), betas=(0.9, 0.999), fused=True)
    sch = schedule(steps)
    times = []
    for step, x in enumerate(batches[:steps]):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_hat, _ = model(x)
        loss = (x - x_hat.float()).pow(2).sum(1).mean()  # no dead latents in a run this short: AuxK is 0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            g = model.W_dec.grad
            g -= (g * model.W_dec).sum(1, keepdim=True) * model.W_dec
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in opt.param_groups:
            group["lr"] = opt.defaults["lr"] * _lr_factor(step, steps, sch)
        opt.step()
        with torch.no_grad():
            model.W_dec /= model.W_dec.norm(dim=1, keepdim=True)
        times.append(time.perf_counter() - t)
    return _summary(times, fvu(lambda x: model(x)[0].float(), held))


def _lr_factor(step, steps, sch) -> float:
    if step < sch["warmup"]:
        return (step + 1) / sch["warmup"]
    if step >= sch["decay_start"]:
        return (steps - step) / (steps - sch["decay_start"])
    return 1.0


# --- 3. dictionary_learning -------------------------------------------------------------------------
def import_dictionary_learning():
    """Its package __init__ imports nnsight (a language-model tracer, not installed and not used by the
    BatchTopK trainer), so a stub module stands in for it."""
    if "nnsight" not in sys.modules:
        stub = types.ModuleType("nnsight")
        stub.LanguageModel = object
        sys.modules["nnsight"] = stub
    from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer

    return BatchTopKTrainer


def run_dictionary_learning(batches, held, steps, autocast: bool) -> dict:
    try:
        Trainer = import_dictionary_learning()
    except Exception as e:  # noqa: BLE001 - report why, do not crash the benchmark
        return {"error": f"cannot import dictionary_learning: {type(e).__name__}: {e}"}
    sch = schedule(steps)
    trainer = Trainer(steps=steps, activation_dim=D, dict_size=M, k=K, layer=0, lm_name="bench", device="cpu",
                      seed=0, warmup_steps=sch["warmup"], decay_start=sch["decay_start"], threshold_start_step=steps // 2)
    times = []
    for step, x in enumerate(batches[:steps]):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            trainer.update(step, x)
        times.append(time.perf_counter() - t)
    ae = trainer.ae
    return _summary(times, fvu(lambda x: ae.decode(ae.encode(x, use_threshold=False)), held))


def _summary(times, fvu_value) -> dict:
    steady = times[2:] if len(times) > 4 else times  # the first steps include one-off allocations
    return {"tokens_per_s": BATCH * len(steady) / sum(steady), "tokens_per_s_median_step": BATCH / float(np.median(steady)),
            "steps_timed": len(steady), "fvu": fvu_value}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=None)
    p.add_argument("--hook", default=None)
    p.add_argument("--steps", type=int, default=40, help="token budget = steps * 4096")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip", nargs="*", default=[], help="trainers to skip: ours dense dictionary_learning")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    held_n = 4 * BATCH
    X, source = load_frames(args.cache, args.hook, args.steps * BATCH + held_n)
    if len(X) < held_n + BATCH:
        sys.exit(f"sae_throughput: {source} gave {len(X)} frames; the benchmark needs at least "
                 f"{held_n + BATCH} ({held_n} held out + one batch of {BATCH}): use a larger cache")
    X = X * (math.sqrt(D) / X.norm(dim=1).mean())  # same scaling for every trainer
    held, train = X[:held_n], X[held_n:]
    batches = [train[(i * BATCH) % (len(train) - BATCH + 1):][:BATCH] for i in range(args.steps)]
    out = {"benchmark": "sae_throughput", "data": source, "d": D, "m": M, "k": K, "batch_size": BATCH,
           "token_budget": args.steps * BATCH, "torch_threads": torch.get_num_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_average_before": os.getloadavg(),
           "torch": torch.__version__, "results": {}}
    runs = {"ours": lambda: run_ours(batches, held, args.steps),
            "dense_same_recipe_bf16": lambda: run_dense(batches, held, args.steps),
            "dictionary_learning_bf16_autocast": lambda: run_dictionary_learning(batches, held, args.steps, True),
            "dictionary_learning_fp32": lambda: run_dictionary_learning(batches, held, min(args.steps, 12), False)}
    for name, fn in runs.items():
        if any(name.startswith(s) for s in args.skip):
            continue
        torch.manual_seed(0)
        out["results"][name] = fn()
        print(f"{name}: {out['results'][name]}", file=sys.stderr)
    r = out["results"]
    dl = r.get("dictionary_learning_bf16_autocast", {})
    if "ours" in r and "tokens_per_s" in dl:
        out["speedup_vs_dictionary_learning"] = r["ours"]["tokens_per_s"] / dl["tokens_per_s"]
        out["targets"] = {"3x_dictionary_learning_at_equal_or_better_fvu":
                          out["speedup_vs_dictionary_learning"] >= 3 and r["ours"]["fvu"] <= dl["fvu"] + 1e-3,
                          "58k_tokens_per_s": r["ours"]["tokens_per_s"] >= 58_000}
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
