"""A trained SAE read as a dictionary of features: the one inference implementation in the workbench.

Every package that needs SAE codes (probes, steering, neuro, the app) reads a saved SAE through
:class:`FeatureDictionary`, never through ``sae`` (packages depend on workbench only). The layout is
SAELens': ``cfg.json`` (``d_in``, ``d_sae``, ``hook_name`` at the top level or under ``metadata``,
``apply_b_dec_to_input``, ``k``) and ``sae_weights.safetensors`` with ``W_enc [d_in, d_sae]``,
``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]`` and, for the Batch-Top-K / JumpReLU
inference form, ``threshold`` (scalar or ``[d_sae]``).

Codes: ``pre = (x - b_dec) @ W_enc + b_enc``; ``z = pre * (pre > threshold)`` (JumpReLU: a frame's
code does not depend on the other frames of its batch). Without a threshold: top-k per frame when
the config has ``k``, plain ReLU otherwise. Reconstruction: ``x_hat = z @ W_dec + b_dec``.

Example
-------
>>> import tempfile, torch
>>> from safetensors.torch import save_file
>>> d = tempfile.mkdtemp()
>>> W = torch.eye(4)
>>> save_file({"W_enc": W, "b_enc": torch.zeros(4), "W_dec": W.clone(), "b_dec": torch.zeros(4),
...            "threshold": torch.full((4,), 0.5)}, f"{d}/sae_weights.safetensors")
>>> _ = open(f"{d}/cfg.json", "w").write('{"d_in": 4, "d_sae": 4, "hook_name": "encoder.blocks.0.hook_resid_post"}')
>>> fd = FeatureDictionary.load(d)
>>> fd.encode(torch.tensor([[1.0, 0.2, 0.0, 2.0]]))
tensor([[1., 0., 0., 2.]])
>>> fd.hook_name, fd.d_in, fd.d_sae, tuple(fd.directions.shape)
('encoder.blocks.0.hook_resid_post', 4, 4, (4, 4))
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


def jumprelu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``pre * (pre > threshold)`` with a non-negative threshold: the Batch-Top-K SAE's inference rule."""
    return pre * (pre > threshold.clamp_min(0.0))


def read_saelens(weights_file: str | Path, cfg_file: str | Path | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(cfg, tensors)`` of a SAELens ``sae_weights.safetensors`` (and its ``cfg.json``, ``{}`` if none).

    The one place that decodes these files: a damaged JSON or safetensors file, or missing
    ``W_enc``/``b_enc``/``W_dec``/``b_dec`` tensors, raise ``ValueError`` naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from workbench.atomic import read_json

    cfg = read_json(cfg_file) if cfg_file is not None and Path(cfg_file).is_file() else {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_file}: expected a JSON object, got {type(cfg).__name__}")
    try:
        w = load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{weights_file}: not a readable safetensors file (truncated or damaged?): {e}") from None
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in w]
    if missing:
        raise ValueError(f"{weights_file}: missing tensors {missing} (has {sorted(w)})")
    from workbench.validate import check_sae_cfg

    check_sae_cfg(cfg, w, cfg_file, weights_file)  # edited fields and NaN weights, named by file and field
    return cfg, w


def is_sae_dir(path: str | Path) -> bool:
    """True when ``path`` holds a saved SAE in the SAELens layout."""
    path = Path(path)
    return (path / CFG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


@dataclass
class FeatureDictionary:
    """A saved SAE: encoder, decoder and threshold as float32 tensors (see module docstring)."""

    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    W_dec: torch.Tensor  # [d_sae, d_in]
    b_dec: torch.Tensor  # [d_in]
    threshold: torch.Tensor | None  # [d_sae] or None
    cfg: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    # --- reading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "FeatureDictionary":
        """Read ``cfg.json`` + ``sae_weights.safetensors`` from directory ``path``.

        Errors name the file: a missing file, a JSON error, a truncated or non-safetensors weights
        file, missing tensors or shapes that do not fit ``d_in``.
        """
        path = Path(path)
        cfg_file, w_file = path / CFG_FILE, path / WEIGHTS_FILE
        for f in (cfg_file, w_file):
            if not f.is_file():
                raise FileNotFoundError(f"not an SAE directory (SAELens layout): {f} is missing")
        return cls.from_files(w_file, cfg_file, path)

    @classmethod
    def from_files(cls, w_file: str | Path, cfg_file: str | Path | None = None,
                   path: str | Path | None = None) -> "FeatureDictionary":
        """Read a SAELens ``sae_weights.safetensors`` and its ``cfg.json`` (optional: ``{}`` when absent)."""
        w_file = Path(w_file)
        cfg, w = read_saelens(w_file, cfg_file)
        W_enc, W_dec = w["W_enc"].float(), w["W_dec"].float()
        d_in = int(cfg.get("d_in", W_enc.shape[0]))
        if W_enc.ndim != 2 or W_enc.shape[0] != d_in:
            raise ValueError(f"{w_file}: W_enc has shape {tuple(W_enc.shape)}, expected [d_in={d_in}, d_sae]")
        d_sae = W_enc.shape[1]
        if tuple(W_dec.shape) != (d_sae, d_in):
            raise ValueError(f"{w_file}: W_dec has shape {tuple(W_dec.shape)}, expected [{d_sae}, {d_in}]")
        thr = w.get("threshold")
        if thr is not None:
            thr = thr.float().reshape(-1)
            thr = thr.expand(d_sae).clone() if thr.numel() == 1 else thr
        return cls(W_enc, w["b_enc"].float(), W_dec, w["b_dec"].float(), thr, cfg, str(path or w_file.parent))

    # --- description --------------------------------------------------------------------------
    @property
    def hook_name(self) -> str | None:
        """The hook the SAE encodes (SAELens keeps it at the top level or, since v6, under ``metadata``)."""
        meta = self.cfg.get("metadata") or {}
        return self.cfg.get("hook_name") or meta.get("hook_name") or self.cfg.get("hook_point") or None

    @property
    def model_name(self) -> str | None:
        meta = self.cfg.get("metadata") or {}
        return self.cfg.get("model_name") or meta.get("model_name") or None

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def k(self) -> int | None:
        """Top-k per frame (cfg ``k``, ``metadata.k`` or SAELens' ``activation_fn_kwargs.k``; None if absent)."""
        k = (self.cfg.get("k") or (self.cfg.get("metadata") or {}).get("k")
             or (self.cfg.get("activation_fn_kwargs") or {}).get("k"))
        return int(k) if k else None

    @property
    def apply_b_dec_to_input(self) -> bool:
        """Whether the encoder reads ``x - b_dec`` (SAELens' default, True) or ``x``."""
        return bool(self.cfg.get("apply_b_dec_to_input", True))

    @property
    def directions(self) -> torch.Tensor:
        """Decoder rows ``[d_sae, d_in]``: feature j adds ``z_j * directions[j]`` to the reconstruction."""
        return self.W_dec

    # --- inference ----------------------------------------------------------------------------
    def _check(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.shape[-1] != self.d_in:
            raise ValueError(f"SAE {self.path or self.hook_name}: input's last dimension is {x.shape[-1]}, "
                             f"expected d_in={self.d_in}")
        return x

    def pre_acts(self, x) -> torch.Tensor:
        """Encoder pre-activations ``[..., d_sae]`` (float32)."""
        x = self._check(x).float()
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    @torch.no_grad()
    def encode(self, x) -> torch.Tensor:
        """Codes ``[..., d_sae]`` of activations ``x [..., d_in]`` (tensor or array; float32 out)."""
        pre = self.pre_acts(x)
        if self.threshold is not None:
            return jumprelu(pre, self.threshold)
        if self.k:
            vals, idx = pre.relu().topk(min(self.k, self.d_sae), dim=-1)
            return torch.zeros_like(pre).scatter(-1, idx, vals)
        return pre.relu()

    @torch.no_grad()
    def decode(self, z) -> torch.Tensor:
        """Reconstruction ``[..., d_in]`` of codes ``z [..., d_sae]``."""
        return torch.as_tensor(z).float() @ self.W_dec + self.b_dec

    def encode_numpy(self, X, batch_size: int = 8192) -> np.ndarray:
        """Codes ``[N, d_sae]`` (float32 array) of ``X [N, d_in]``, in batches to bound memory."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.d_in:
            raise ValueError(f"SAE {self.path}: input has shape {X.shape}, expected [N, {self.d_in}]")
        out = np.empty((X.shape[0], self.d_sae), dtype=np.float32)
        for i in range(0, X.shape[0], batch_size):
            out[i : i + batch_size] = self.encode(np.asarray(X[i : i + batch_size], dtype=np.float32)).numpy()
        return out


def load_feature_dictionaries(path: str | Path) -> dict[str, FeatureDictionary]:
    """``{hook_name: FeatureDictionary}`` from one SAE directory or a directory of SAE directories.

    Searches ``path`` itself, then its children and grandchildren (``saes/NAME/HOOK/``).
    """
    path = Path(path)
    if is_sae_dir(path):
        dirs = [path]
    else:
        dirs = sorted({p.parent for pat in ("*/cfg.json", "*/*/cfg.json") for p in path.glob(pat)
                       if is_sae_dir(p.parent)})
    if not dirs:
        raise FileNotFoundError(f"no SAE ({CFG_FILE} + {WEIGHTS_FILE}) in {path} or its sub-directories")
    out: dict[str, FeatureDictionary] = {}
    for d in dirs:
        fd = FeatureDictionary.load(d)
        if not fd.hook_name:
            raise ValueError(f"{d / CFG_FILE} has no hook_name: cannot tell which activations it encodes")
        if fd.hook_name in out:
            log.warning("two SAEs for %s (%s, %s); using the first", fd.hook_name, out[fd.hook_name].path, d)
            continue
        out[fd.hook_name] = fd
    return out
