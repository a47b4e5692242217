"""Probing SAE codes instead of raw activations, and AudioSAE-style top-k feature probing.

The probes package does not import the ``sae`` package (packages depend on workbench
only). It reads the SAELens layout directly: ``cfg.json`` (``d_in``, ``d_sae``,
``hook_name``, optional ``apply_b_dec_to_input``, ``architecture``, ``k``) and
``sae_weights.safetensors`` (``hook_name`` may sit under ``metadata``) with ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``b_dec``
[d_in] and, for the Batch-Top-K/JumpReLU inference form, ``threshold`` (scalar or
[d_sae]). Codes are ``z = pre * (pre > threshold)`` with
``pre = (x - b_dec) @ W_enc + b_enc``; without a threshold, per-frame top-k when the
config has ``k`` and plain ReLU otherwise.

Top-k feature probing ranks the SAE latents by how well they separate the classes
(ANOVA F statistic, :func:`sklearn.feature_selection.f_classif`) on the *training*
fold only, then probes on the k best, for a range of k.

Example
-------
>>> enc = SAEEncoder.load("work/saes/blocks.3")                        # doctest: +SKIP
>>> codes = enc.encode(cache.load("encoder.blocks.3.hook_resid_post"))  # doctest: +SKIP
>>> curve = topk_sweep(cache, "phones", "work/saes", ks=(1, 8, 64))     # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from sklearn.base import clone
from sklearn.feature_selection import f_classif
from tqdm.auto import tqdm

from probes.controls import majority_baseline
from probes.estimator import LinearProbe

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class SAEEncoder:
    """The encoder half of a saved SAE (enough to compute codes)."""

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    b_dec: torch.Tensor
    threshold: torch.Tensor | None
    cfg: dict[str, Any]
    path: str = ""

    @property
    def hook_name(self) -> str | None:
        """The hook the SAE encodes (SAELens keeps it at the top level or, since v6, under ``metadata``)."""
        meta = self.cfg.get("metadata") or {}
        return self.cfg.get("hook_name") or meta.get("hook_name") or self.cfg.get("hook_point")

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @classmethod
    def load(cls, path: str | Path) -> "SAEEncoder":
        """Read ``cfg.json`` + ``sae_weights.safetensors`` from ``path``; errors name the file and key."""
        path = Path(path)
        cfg_file, w_file = path / "cfg.json", path / "sae_weights.safetensors"
        for f in (cfg_file, w_file):
            if not f.is_file():
                raise FileNotFoundError(f"not an SAE directory (SAELens layout): {f} is missing")
        cfg = json.loads(cfg_file.read_text())
        w = load_file(str(w_file))
        missing = [k for k in ("W_enc", "b_enc", "b_dec") if k not in w]
        if missing:
            raise KeyError(f"{w_file}: missing tensors {missing} (has {sorted(w)})")
        W_enc = w["W_enc"].float()
        d_in = cfg.get("d_in", W_enc.shape[0])
        if W_enc.ndim != 2 or W_enc.shape[0] != d_in:
            raise ValueError(f"{w_file}: W_enc has shape {tuple(W_enc.shape)}, expected [d_in={d_in}, d_sae]")
        thr = w.get("threshold")
        return cls(W_enc, w["b_enc"].float(), w["b_dec"].float(), None if thr is None else thr.float(), cfg, str(path))

    @torch.no_grad()
    def encode(self, X, batch_size: int = 8192) -> np.ndarray:
        """SAE codes [N, d_sae] (float32) of activations ``X`` [N, d_in]."""
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        if X.ndim != 2 or X.shape[1] != self.d_in:
            raise ValueError(f"SAE {self.path}: input has shape {tuple(X.shape)}, expected [N, {self.d_in}]")
        sub_b_dec = bool(self.cfg.get("apply_b_dec_to_input", True))
        k = self.cfg.get("k")
        out = np.empty((X.shape[0], self.d_sae), dtype=np.float32)
        for i in range(0, X.shape[0], batch_size):
            x = X[i : i + batch_size]
            pre = (x - self.b_dec if sub_b_dec else x) @ self.W_enc + self.b_enc
            if self.threshold is not None:  # JumpReLU: a frame's code does not depend on its batch
                z = pre * (pre > self.threshold.clamp_min(0.0))
            elif k:
                top = pre.topk(int(k), dim=1)
                z = torch.zeros_like(pre).scatter_(1, top.indices, top.values.relu())
            else:
                z = pre.relu()
            out[i : i + len(x)] = z.numpy()
        return out


def load_sae_encoders(path: str | Path) -> dict[str, SAEEncoder]:
    """``{hook_name: SAEEncoder}`` from one SAE directory or a directory of SAE directories."""
    path = Path(path)
    dirs = [path] if (path / "cfg.json").is_file() else sorted(p.parent for p in path.glob("*/cfg.json"))
    if not dirs:
        raise FileNotFoundError(f"no SAE (cfg.json + sae_weights.safetensors) in {path} or its sub-directories")
    out: dict[str, SAEEncoder] = {}
    for d in dirs:
        enc = SAEEncoder.load(d)
        if not enc.hook_name:
            raise KeyError(f"{d / 'cfg.json'} has no hook_name: cannot tell which activations it encodes")
        if enc.hook_name in out:
            logger.warning("two SAEs for %s (%s, %s); using the first", enc.hook_name, out[enc.hook_name].path, d)
            continue
        out[enc.hook_name] = enc
    return out


def rank_features(X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """Feature indices, most class-discriminative first (ANOVA F on training data; dead features last)."""
    with warnings.catch_warnings():  # constant (dead) features give 0/0
        warnings.simplefilter("ignore")
        F, _ = f_classif(X_train, y_train)
    F = np.nan_to_num(F, nan=-1.0, posinf=np.finfo(np.float64).max)
    return np.argsort(-F, kind="stable")


def topk_feature_curve(
    X: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    ks: Sequence[int] = DEFAULT_KS,
    groups: np.ndarray | None = None,
    probe=None,
) -> pd.DataFrame:
    """Accuracy against k when probing only the k top-ranked features (ranked per training fold).

    Returns one row per (k, fold): ``k``, ``fold``, ``accuracy``, ``majority`` and the
    selected feature indices (``features``, the first 16) so top features can be inspected.
    """
    X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
    probe = LinearProbe() if probe is None else probe
    ks = sorted({int(k) for k in ks if 0 < int(k) <= X.shape[1]})
    if not ks:
        raise ValueError(f"no k in {ks} fits {X.shape[1]} features")
    rows = []
    for fold, (tr, te) in enumerate(splits):
        order = rank_features(X[tr], y[tr])  # test data never sees the ranking
        maj = majority_baseline(y[tr], y[te])
        for k in ks:
            cols = order[:k]
            kw = {"groups": groups[tr]} if groups is not None and isinstance(probe, LinearProbe) else {}
            fitted = clone(probe).fit(X[tr][:, cols], y[tr], **kw)
            acc = float(np.mean(fitted.predict(X[te][:, cols]) == y[te]))
            rows.append({"k": k, "fold": fold, "accuracy": acc, "majority": maj, "features": cols[:16].tolist()})
    return pd.DataFrame(rows)


def topk_sweep(
    cache,
    target: str,
    sae: str | Path,
    ks: Sequence[int] = DEFAULT_KS,
    hooks="all",
    split: str = "speaker",
    folds: int = 5,
    pooling: str = "frame",
    max_frames: int | None = None,
    seed: int = 0,
    probe=None,
    verbose: bool = True,
) -> pd.DataFrame:
    """:func:`topk_feature_curve` for every hook of ``cache`` that has an SAE in ``sae``."""
    from probes.splits import grouped_kfold
    from probes.sweep import resolve_hooks
    from probes.targets import build_target

    encoders = load_sae_encoders(sae)
    hook_list = [h for h in resolve_hooks(cache.hooks, hooks) if h in encoders]
    if not hook_list:
        raise ValueError(f"no SAE in {sae} matches the cache hooks; SAEs are for {sorted(encoders)}")
    out = []
    for hook in tqdm(hook_list, desc=f"top-k SAE probe {target}", unit="layer", disable=not verbose):
        tgt = build_target(cache.frames(hook), target, split=split, pooling=pooling, max_samples=max_frames, seed=seed)
        X = tgt.features(encoders[hook].encode(cache.load(hook, tgt.rows)))
        splits = grouped_kfold(tgt.groups, folds=folds, seed=seed, what=split)
        df = topk_feature_curve(X, tgt.y, splits, ks=ks, groups=tgt.groups, probe=probe)
        df.insert(0, "hook", hook)
        out.append(df)
    return pd.concat(out, ignore_index=True)
