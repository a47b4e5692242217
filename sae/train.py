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
>>> from workbench.cache import ActivationCache                                 # doctest: +SKIP
>>> cache = ActivationCache.open("work/cache")                                  # doctest: +SKIP
>>> saes = train(cache, ["encoder.blocks.3.hook_resid_post"],                   # doctest: +SKIP
...              TrainConfig(expansion=8, k=50, tokens=5_000_000), out="work/saes/run1")
>>> saes["encoder.blocks.3.hook_resid_post"].encode(x).shape                    # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from sae.config import SAEConfig, TrainConfig
from sae.data import as_source
from sae.io import save_sae
from sae.model import BatchTopKSAE
from workbench.atomic import atomic_path, write_json, write_jsonl

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
_NON_RECIPE = {"threads", "checkpoint_every", "log_every"}


class TrainingDiverged(RuntimeError):
    """Raised when the loss or gradient becomes NaN/inf; the last good checkpoint is kept."""


@dataclass
class _HookState:
    sae: BatchTopKSAE
    opt: torch.optim.Adam
    scale: float
    since_fired: torch.Tensor
    log: list = field(default_factory=list)


def train(data, hooks: Sequence[str] | None = None, cfg: TrainConfig | None = None, out: str | os.PathLike | None = None,
          resume: bool = False, model_name: str = "", verbose: bool = True, **overrides) -> dict[str, BatchTopKSAE]:
    """Train one SAE per hook; returns ``{hook: BatchTopKSAE}`` folded to raw input units.

    ``data``: an ActivationCache, ``{hook: Tensor[N, D]}``, a :class:`~sae.data.BatchSource` or a
    callable ``epoch -> iterable of batches``. ``overrides`` update ``cfg`` fields. With ``out``,
    each SAE is saved in the SAELens layout under ``out/<hook>/`` with its training log.
    """
    cfg = TrainConfig(**{**(cfg.to_dict() if cfg else {}), **overrides})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _warn_spinning_threads()
    source = as_source(data, list(hooks) if hooks else None, cfg.batch_size, cfg.seed)
    hooks = source.hooks
    model_name = model_name or source.meta.get("model_name", "")
    out = Path(out) if out is not None else None
    ckpt_path = out / CHECKPOINT if out is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        if not resume:
            raise FileExistsError(f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or use another out dir")
        states, step, pos = _load_checkpoint(ckpt_path, cfg, hooks)
        log.info("resuming %s at step %d/%d", ckpt_path, step, cfg.steps)
    else:
        states = {h: _init_hook(source, h, cfg, model_name) for h in hooks}
        step, pos = 0, {"epoch": 0, "batch": 0}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "train_config.json", {"train": cfg.to_dict(), "hooks": hooks, "source": source.meta},
                   indent=2, default=str)
    stream = source.epoch(pos["epoch"], skip=pos["batch"])
    bar = tqdm(total=cfg.steps, initial=step, disable=not verbose, desc=f"sae train ({len(hooks)} hook(s))", unit="step")
    last_good = step if ckpt_path is not None and ckpt_path.exists() else None
    t0, step0 = time.perf_counter(), step
    while step < cfg.steps:
        batch = next(stream, None)
        if batch is None:
            pos = {"epoch": pos["epoch"] + 1, "batch": 0}
            stream = source.epoch(pos["epoch"])
            batch = next(stream, None)
            if batch is None:
                raise ValueError("the data source yielded no batches (fewer frames than one batch?)")
        stats = {}
        for h in hooks:
            try:
                stats[h] = _train_step(states[h], batch[h], step, cfg)
            except TrainingDiverged as e:
                where = f"{ckpt_path} (step {last_good})" if last_good is not None else "none written yet"
                raise TrainingDiverged(f"hook {h!r}, step {step}: {e}. Training stopped; last good checkpoint: "
                                       f"{where}. Check the data for NaN/inf or lower the lr, then --resume.") from None
        step += 1
        pos["batch"] += 1
        elapsed = time.perf_counter() - t0
        _report(bar, stats, states, step, step0, cfg, elapsed)
        if ckpt_path is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            _save_checkpoint(ckpt_path, states, step, pos, cfg, hooks)
            last_good = step
            for h in hooks:  # the log so far, readable while training runs
                _write_log(out / h, states[h].log)
    bar.close()
    result = {h: st.sae.folded(st.scale) for h, st in states.items()}
    if out is not None:
        for h, sae in result.items():
            sae.cfg.metadata.update(training_tokens=step * cfg.batch_size, input_scale_folded=states[h].scale,
                                    train_config=cfg.to_dict())
            save_sae(sae, out / h)
            _write_log(out / h, states[h].log)
    return result


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


def _train_step(st: _HookState, x: torch.Tensor, step: int, cfg: TrainConfig) -> dict:
    sae, n = st.sae, x.shape[0]
    x = x.float() * st.scale
    dead = st.since_fired >= cfg.dead_after_tokens
    out = sae.training_forward(x, k=cfg.k_at(step), dead=dead, k_aux=sae.d_in // 2,
                               auxk_alpha=cfg.auxk_alpha, bf16=cfg.bf16)
    if not torch.isfinite(out.loss):
        raise TrainingDiverged(f"non-finite loss ({float(out.loss.detach())})")
    st.opt.zero_grad(set_to_none=True)
    out.loss.backward()
    sae.project_decoder_grad_()
    gnorm = torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
    if not torch.isfinite(gnorm):
        raise TrainingDiverged(f"non-finite gradient norm ({float(gnorm)})")
    for group in st.opt.param_groups:
        group["lr"] = cfg.lr_for(sae.d_sae) * cfg.lr_factor(step)
    st.opt.step()
    sae.normalize_decoder_()
    with torch.no_grad():
        fired = torch.bincount(out.pattern.cols, minlength=sae.d_sae) > 0
        st.since_fired += n
        st.since_fired[fired] = 0
        if step >= cfg.threshold_start and out.vals.numel():
            smallest = out.vals.min().float()
            thr = sae.threshold
            thr.copy_(smallest if float(thr) < 0 else cfg.threshold_beta * thr + (1 - cfg.threshold_beta) * smallest)
        total_var = (x - x.mean(dim=0)).pow(2).sum()
        fvu = float(out.l2 * n / total_var)
    return {"loss": float(out.loss.detach()), "l2": float(out.l2.detach()), "auxk": float(out.auxk.detach()), "fvu": fvu,
            "l0": out.pattern.nnz / n, "dead_frac": float(dead.float().mean()), "threshold": float(sae.threshold)}


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


def _save_checkpoint(path: Path, states: dict, step: int, pos: dict, cfg: TrainConfig, hooks: list[str]) -> None:
    blob = {
        "format": "workbench-sae-checkpoint-v1", "step": step, "pos": dict(pos), "cfg": cfg.to_dict(), "hooks": hooks,
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
    return states, int(blob["step"]), dict(blob["pos"])


def _write_log(folder: Path, rows: list[dict]) -> None:
    write_jsonl(folder / "training_log.jsonl", rows)
