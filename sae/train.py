"""Train Batch-Top-K SAEs, one per hook, side by side in one pass over the data.

The recipe (see :class:`~sae.config.TrainConfig`): inputs scaled by one scalar per hook so the
mean norm is ``sqrt(d_in)``; ``b_dec`` starts at the geometric median of the first batch; loss =
squared error + AuxK; Adam with warm-up / linear decay and gradient clipping; decoder gradients
projected orthogonal to the (unit) decoder rows, rows renormalised after each step; a JumpReLU
threshold learned as an EMA of the smallest selected activation.

Runs are resumable: ``out/checkpoint.pt`` holds weights, optimizer state, data position and
counters, written atomically every ``checkpoint_every`` steps; ``resume=True`` continues to the
same result as an uninterrupted run. A non-finite loss stops training with a clear message and
leaves the last good checkpoint in place.

Example
-------
On a cache: ``train(ActivationCache.open("work/cache"), ["encoder.blocks.3.hook_resid_post"],
TrainConfig(expansion=8, k=50, tokens=5_000_000), out="work/saes/run1")``; here on a tensor:

>>> import tempfile
>>> x = torch.randn(2048, 16, generator=torch.Generator().manual_seed(0))
>>> out = tempfile.mkdtemp()
>>> saes = train({"h": x}, ["h"], TrainConfig(expansion=4, k=4, tokens=2048, batch_size=256, dtype="float32"),
...              out=out, verbose=False)
>>> saes["h"].encode(x[:3]).shape, sorted(p.name for p in Path(out, "h").iterdir())
(torch.Size([3, 64]), ['cfg.json', 'sae_weights.safetensors', 'training_log.jsonl'])
"""
from __future__ import annotations

import logging
import math
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch.profiler import record_function
from tqdm.auto import tqdm

from sae.config import RUNTIME_FIELDS, SAEConfig, TrainConfig
from sae.data import as_source
from sae.ddp import LOCAL, Collective
from sae.io import save_sae
from sae.model import BatchTopKSAE
from sae.sparse import Scratch
from workbench.atomic import atomic_path, write_json, write_jsonl
from workbench.cache.distributed import Dist, share_bounds
from workbench.cache.writer import prefetch
from workbench.compute import choose_dtype, torch_threads

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
#: settings a resumed run may change: the runtime (bookkeeping, threads, the compute dtype: the machine may differ)
_NON_RECIPE = set(RUNTIME_FIELDS)


class TrainingDiverged(RuntimeError):
    """Raised when the loss or gradient becomes NaN/inf; the last good checkpoint is kept."""


@dataclass
class _HookState:
    sae: BatchTopKSAE
    opt: torch.optim.Adam
    scale: float
    since_fired: torch.Tensor
    log: list = field(default_factory=list)
    scratch: Scratch = field(default_factory=Scratch)  # the encoder's chunk buffer, reused every step


def train(data, hooks: Sequence[str] | None = None, cfg: TrainConfig | None = None, out: str | os.PathLike | None = None,
          resume: bool = False, model_name: str = "", verbose: bool = True, **overrides) -> dict[str, BatchTopKSAE]:
    """Train one SAE per hook; returns ``{hook: BatchTopKSAE}`` folded to raw input units.

    ``data``: an ActivationCache, ``{hook: Tensor[N, D]}``, a :class:`~sae.data.BatchSource` or a
    callable ``epoch -> iterable of batches``. ``overrides`` update ``cfg`` fields. With ``out``,
    each SAE is saved in the SAELens layout under ``out/<hook>/`` with its training log.

    Under torchrun (a process group is initialised) every rank trains on its block of each global
    batch and the ranks stay in step (see :mod:`sae.ddp`); rank 0 writes checkpoints and
    artifacts, and every rank returns the same SAEs. A checkpoint resumes under any world size.
    """
    cfg = TrainConfig.from_dict({**(cfg.to_dict() if cfg else {}), **overrides})
    with torch_threads(cfg.threads):  # the process-wide setting is restored on return (and on errors)
        return _train(data, hooks, cfg, out, resume, model_name, verbose)


def _train(data, hooks, cfg: TrainConfig, out, resume: bool, model_name: str, verbose: bool) -> dict[str, BatchTopKSAE]:
    comm = Collective(Dist.current())
    _warn_spinning_threads()
    choice = comm.dist.broadcast(choose_dtype(cfg.dtype, "cpu"))  # one decision for all ranks: rank 0's
    log.info("sae train: computing in %s (%s)", choice.name, choice.reason)
    source = as_source(data, list(hooks) if hooks else None, cfg.batch_size, cfg.seed)
    hooks = source.hooks
    model_name = model_name or source.meta.get("model_name", "")
    out = Path(out) if out is not None else None
    ckpt_path = out / CHECKPOINT if out is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        if not resume:
            raise FileExistsError(f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or use another out dir")
        states, step, pos, saved_world = _load_checkpoint(ckpt_path, cfg, hooks)
        log.info("resuming %s at step %d/%d (written by %d rank(s), now %d)", ckpt_path, step, cfg.steps,
                 saved_world, comm.world_size)
    else:
        states = {h: _init_hook(source, h, cfg, model_name) for h in hooks}
        step, pos = 0, {"epoch": 0, "batch": 0}
    for st in states.values():  # identical on every rank already; rank 0's copy guarantees it
        scale = torch.tensor([st.scale], dtype=torch.float64)
        comm.broadcast_([*st.sae.parameters(), st.sae.threshold, st.since_fired, scale])
        st.scale = float(scale[0])
    if out is not None and comm.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "train_config.json", {"recipe": _effective_recipe(cfg, states),
                                               "runtime": {**asdict(cfg.runtime), "compute_dtype": choice.name},
                                               "train": cfg.to_dict(), "hooks": hooks, "source": source.meta,
                                               "compute_dtype": choice.name, "compute_dtype_reason": choice.reason,
                                               "distributed": _shares(source, cfg, comm.world_size)},
                   indent=2, default=str)
    part = (comm.rank, comm.world_size)
    # batches are read on a background thread, one step ahead: the reads overlap the numpy parts of a step
    stream = prefetch(source.epoch(pos["epoch"], skip=pos["batch"], part=part))
    bar = tqdm(total=cfg.steps, initial=step, disable=not verbose or not comm.is_main,
               desc=f"sae train ({len(hooks)} hook(s), {choice.name})", unit="step")
    last_good = step if ckpt_path is not None and ckpt_path.exists() else None
    t0, step0 = time.perf_counter(), step
    try:
        while step < cfg.steps:
            batch = next(stream, None)
            if batch is None:
                pos = {"epoch": pos["epoch"] + 1, "batch": 0}
                stream.close()
                stream = prefetch(source.epoch(pos["epoch"], part=part))
                batch = next(stream, None)
                if batch is None:
                    raise ValueError("the data source yielded no batches (fewer frames than one batch?)")
            stats = {}
            for h in hooks:
                try:
                    stats[h] = _train_step(states[h], batch[h], step, cfg, choice.dtype, comm)
                except TrainingDiverged as e:
                    where = f"{ckpt_path} (step {last_good})" if last_good is not None else "none written yet"
                    raise TrainingDiverged(f"hook {h!r}, step {step}: {e}. Training stopped; last good checkpoint: "
                                           f"{where}. Check the data for NaN/inf or lower the lr, then --resume.") from None
            step += 1
            pos["batch"] += 1
            elapsed = time.perf_counter() - t0
            _report(bar, stats, states, step, step0, cfg, elapsed)
            if ckpt_path is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                if comm.is_main:
                    _save_checkpoint(ckpt_path, states, step, pos, cfg, hooks, comm.world_size)
                    for h in hooks:  # the log so far, readable while training runs
                        _write_log(out / h, states[h].log)
                last_good = step
    finally:  # also on an error or Ctrl-C: stop and join the loader thread (a live one aborts the process at exit)
        stream.close()
        bar.close()
    result = {h: st.sae.folded(st.scale) for h, st in states.items()}
    if out is not None and comm.is_main:
        for h, sae in result.items():
            sae.cfg.metadata.update(training_tokens=step * cfg.batch_size, input_scale_folded=states[h].scale,
                                    train_config=cfg.to_dict(), compute_dtype=choice.name, world_size=comm.world_size)
            save_sae(sae, out / h)
            _write_log(out / h, states[h].log)
    comm.barrier()  # the artifacts are complete before any rank returns
    return result


def _effective_recipe(cfg: TrainConfig, states: dict) -> dict:
    """The recipe as it runs (:meth:`sae.config.Recipe.effective`): ``lr`` one number, or one per hook
    when the hooks' widths differ. ``train_config.json`` records this under ``"recipe"``; the data
    (which frames, which filters) is recorded beside it under ``"source"``."""
    rec = cfg.recipe.effective()
    lrs = {h: cfg.lr_for(st.sae.d_sae) for h, st in states.items()}
    rec["lr"] = next(iter(lrs.values())) if len(set(lrs.values())) == 1 else lrs
    return rec


def _shares(source, cfg: TrainConfig, world_size: int) -> dict:
    """World size and each rank's share of the frames (per step, and of the source's rows)."""
    per_step = [b - a for a, b in (share_bounds(cfg.batch_size, r, world_size) for r in range(world_size))]
    frames = source.meta.get("frames")
    total = max(frames.values()) if isinstance(frames, dict) and frames else frames
    return {"world_size": world_size, "backend": "gloo" if world_size > 1 else None,
            "frames_per_step_per_rank": per_step,
            "share_of_frames_per_rank": [n / cfg.batch_size for n in per_step],
            "frames_per_epoch_per_rank": [int(total) * n // cfg.batch_size for n in per_step] if total else None}


_WARNED: list[bool] = []


def _warn_spinning_threads() -> None:
    if torch.get_num_threads() > 1 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE" and not _WARNED:
        _WARNED.append(True)
        log.warning("OMP_WAIT_POLICY is not PASSIVE: on a busy machine torch's spinning OpenMP threads can make "
                    "SAE steps many times slower; start Python with OMP_WAIT_POLICY=PASSIVE (or use threads=1)")


def _init_hook(source, hook: str, cfg: TrainConfig, model_name: str) -> _HookState:
    d = source.d_model(hook)
    sae_cfg = SAEConfig(d_in=d, expansion=cfg.expansion, k=cfg.k, hook_name=hook, model_name=model_name)
    # seeded by hook name: training a hook alone or beside others gives the same SAE
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + zlib.crc32(hook.encode()))
    sae = BatchTopKSAE(sae_cfg, generator=gen)
    first, scale = _estimate_scale(source, hook, d, cfg)
    with torch.no_grad():
        sae.b_dec.copy_(geometric_median(first * scale))
    opt = _adam(sae, cfg)
    return _HookState(sae, opt, scale, torch.zeros(sae_cfg.d_sae, dtype=torch.long))


def _estimate_scale(source, hook: str, d: int, cfg: TrainConfig) -> tuple[torch.Tensor, float]:
    """First batch, and the scalar that brings the mean frame norm to sqrt(d) (from the first frames)."""
    norms, first = [], None
    for batch in source.epoch(0):
        x = batch[hook].float()
        first = x if first is None else first
        norms.append(x.norm(dim=1))
        if sum(len(n) for n in norms) >= cfg.scale_estimate_frames:
            break
    if first is None:
        raise ValueError(f"the data source yielded no batches for {hook!r}")
    mean_norm = float(torch.cat(norms).mean())
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"cannot scale {hook!r}: mean frame norm is {mean_norm} (NaN/inf or all-zero data?)")
    return first, math.sqrt(d) / mean_norm


def _adam(sae: BatchTopKSAE, cfg: TrainConfig) -> torch.optim.Adam:
    # fused: one pass over each tensor per step (the foreach version is several times slower on CPU)
    return torch.optim.Adam(sae.parameters(), lr=cfg.lr_for(sae.d_sae), betas=cfg.betas, fused=True)


@torch.no_grad()
def geometric_median(x: torch.Tensor, iters: int = 100, tol: float = 1e-5) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the summed distance to the rows of ``x``."""
    guess = x.mean(dim=0)
    for _ in range(iters):
        w = 1.0 / (x - guess).norm(dim=1).clamp_min(1e-8)
        new = (w[:, None] * x).sum(dim=0) / w.sum()
        if (new - guess).norm() < tol:
            return new
        guess = new
    return guess


def _train_step(st: _HookState, x: torch.Tensor, step: int, cfg: TrainConfig, dtype: torch.dtype = torch.float32,
                comm: Collective = LOCAL) -> dict:
    sae = st.sae
    x = x.float() * st.scale
    dead = st.since_fired >= cfg.dead_after_tokens
    with record_function("sae.forward"):
        out = sae.training_forward(x, k=cfg.k_at(step), dead=dead, k_aux=sae.d_in // 2,
                                   auxk_alpha=cfg.auxk_alpha, dtype=dtype, comm=comm, scratch=st.scratch)
        loss = comm.sum(out.loss.detach().clone().reshape(1))  # every rank sees the same: all stop together
    if not torch.isfinite(loss).all():
        raise TrainingDiverged(f"non-finite loss ({float(loss[0])})")
    st.opt.zero_grad(set_to_none=True)
    with record_function("sae.backward"):
        out.loss.backward()
    with record_function("sae.sum_grads"):
        comm.sum_grads_(sae.parameters())
    with record_function("sae.optimizer"):
        sae.project_decoder_grad_()
        params = list(sae.parameters())
        gnorm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        if not torch.isfinite(gnorm):
            raise TrainingDiverged(f"non-finite gradient norm ({float(gnorm)})")
        if gnorm > cfg.grad_clip:  # scale only when clipping: most steps skip a pass over every gradient
            torch.nn.utils.clip_grads_with_norm_(params, cfg.grad_clip, gnorm)
        for group in st.opt.param_groups:
            group["lr"] = cfg.lr_for(sae.d_sae) * cfg.lr_factor(step)
        st.opt.step()
        sae.normalize_decoder_()
    with torch.no_grad(), record_function("sae.statistics"):
        # one reduction for the step's statistics: frames, moments of x, l2, auxk, nnz, firing counts
        flat = x.reshape(-1)
        sums = comm.sum(torch.cat([torch.tensor([x.shape[0], float(out.l2), float(out.auxk), out.pattern.nnz],
                                                dtype=torch.float64), x.sum(dim=0).double(),
                                   torch.dot(flat, flat).double().reshape(1),
                                   torch.bincount(out.pattern.cols, minlength=sae.d_sae).double()]))
        n, l2, auxk, nnz = (float(v) for v in sums[:4])
        d = sae.d_in
        sum_x, sum_x2, fired = sums[4 : 4 + d], float(sums[4 + d]), sums[5 + d :] > 0
        st.since_fired += int(n)
        st.since_fired[fired] = 0
        if step >= cfg.threshold_start:
            smallest = comm.min(out.vals.min().float().reshape(1) if out.vals.numel() else
                                torch.tensor([float("inf")]))[0]
            if torch.isfinite(smallest):
                thr, beta = sae.threshold, cfg.threshold_ema
                thr.copy_(smallest if float(thr) < 0 else beta * thr + (1 - beta) * smallest)
        total_var = sum_x2 - float(sum_x.pow(2).sum()) / n
    return {"loss": float(loss[0]), "l2": l2, "auxk": auxk, "fvu": l2 * n / total_var,
            "l0": nnz / n, "dead_frac": float(dead.float().mean()), "threshold": float(sae.threshold)}


def _report(bar, stats: dict, states: dict, step: int, step0: int, cfg: TrainConfig, elapsed: float) -> None:
    tok_s = (step - step0) * cfg.batch_size / max(elapsed, 1e-9)
    if step % cfg.log_every == 0 or step == cfg.steps:
        for h, s in stats.items():
            states[h].log.append({"step": step, "tokens": step * cfg.batch_size, **s,
                                  "lr": states[h].opt.param_groups[0]["lr"], "tokens_per_s": tok_s})
    mean = {k: sum(s[k] for s in stats.values()) / len(stats) for k in ("fvu", "l0", "dead_frac")}
    bar.set_postfix(fvu=f"{mean['fvu']:.3f}", l0=f"{mean['l0']:.1f}", dead=f"{mean['dead_frac']:.1%}",
                    tok_s=f"{tok_s:,.0f}", refresh=False)
    bar.update(1)


def _save_checkpoint(path: Path, states: dict, step: int, pos: dict, cfg: TrainConfig, hooks: list[str],
                     world_size: int = 1) -> None:
    blob = {
        "format": "workbench-sae-checkpoint-v1", "step": step, "pos": dict(pos), "cfg": cfg.to_dict(), "hooks": hooks,
        "world_size": world_size,  # pos counts global batches: any world size can resume it
        "torch_rng": torch.get_rng_state(),
        "states": {h: {"sae_cfg": st.sae.cfg.to_dict(), "sae": st.sae.state_dict(), "opt": st.opt.state_dict(),
                       "scale": st.scale, "since_fired": st.since_fired, "log": st.log} for h, st in states.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def _load_checkpoint(path: Path, cfg: TrainConfig, hooks: list[str]):
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    saved = TrainConfig.from_dict(blob["cfg"]).to_dict()
    diff = {k: (saved[k], v) for k, v in cfg.to_dict().items() if k not in _NON_RECIPE and saved.get(k) != v}
    if diff:
        raise ValueError(f"cannot resume {path}: settings differ from the checkpoint (saved, now): {diff}")
    if list(blob["hooks"]) != list(hooks):
        raise ValueError(f"cannot resume {path}: it trains hooks {blob['hooks']}, now {hooks}")
    torch.set_rng_state(blob["torch_rng"])
    states = {}
    for h in hooks:
        s = blob["states"][h]
        sae = BatchTopKSAE(SAEConfig.from_dict(s["sae_cfg"]))
        sae.load_state_dict(s["sae"])
        opt = _adam(sae, cfg)
        opt.load_state_dict(s["opt"])
        states[h] = _HookState(sae, opt, float(s["scale"]), s["since_fired"].clone(), list(s["log"]))
    return states, int(blob["step"]), dict(blob["pos"]), int(blob.get("world_size", 1))


def _write_log(folder: Path, rows: list[dict]) -> None:
    write_jsonl(folder / "training_log.jsonl", rows)
