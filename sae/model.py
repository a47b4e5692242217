"""The Batch-Top-K sparse autoencoder.

``z = ReLU(W_enc (x - b_dec) + b_enc)``; training keeps the ``k * N`` largest entries of the
whole batch of N frames; ``x_hat = z W_dec + b_dec`` with unit-norm decoder rows. At inference
a learned threshold replaces the batch top-k (JumpReLU: ``z = pre * (pre > threshold)``, the rule
:func:`workbench.features.jumprelu` that every reader of a saved SAE applies), so a frame's code
does not depend on what else is in the batch.

Shapes: ``W_enc`` and ``W_dec`` are both ``[d_sae, d_in]`` (row j = encoder direction / decoder
atom of feature j); :mod:`sae.io` converts to the SAELens / dictionary_learning layouts.

Example
-------
>>> sae = BatchTopKSAE(SAEConfig(d_in=16, expansion=4, k=3))
>>> x = torch.randn(10, 16)
>>> z = sae.encode(x, mode="batch_topk")
>>> int((z > 0).sum()), sae.decode(z).shape   # exactly k * N = 3 * 10 codes over the batch
(30, torch.Size([10, 16]))
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function

from sae.config import SAEConfig
from sae.ddp import LOCAL, Collective
from sae.sparse import Scratch, SelectedPreActs, SparseDecode, SparsePattern, encode_select, select_batch_topk
from workbench.features import jumprelu

MODES = ("threshold", "batch_topk", "topk")
#: dtype of the sparse row gathers (embedding_bag): float32, whatever the matmul dtype. bfloat16
#: gathers halve the bytes moved but measured 2x slower here (conversions plus a slower kernel)
GATHER_DTYPE = torch.float32


@dataclass
class TrainOutput:
    """What one training forward pass returns (losses are scalar tensors with grad)."""

    loss: torch.Tensor
    l2: torch.Tensor
    auxk: torch.Tensor
    x_hat: torch.Tensor
    pattern: SparsePattern
    vals: torch.Tensor


class BatchTopKSAE(nn.Module):
    """A Batch-Top-K SAE (see module docstring). ``threshold < 0`` means "not learned yet"."""

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d, m = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.empty(m, d))
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.W_dec = nn.Parameter(torch.empty(m, d))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("threshold", torch.tensor(-1.0, dtype=torch.float32))
        self.reset_parameters(generator)

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def k(self) -> int:
        return self.cfg.k

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Unit-norm random decoder rows, ``W_enc = W_dec`` (i.e. W_enc^T of the usual layout), b = 0."""
        w = torch.randn(self.d_sae, self.d_in, generator=generator)
        w /= w.norm(dim=1, keepdim=True)
        self.W_dec.copy_(w)
        self.W_enc.copy_(w)
        self.b_enc.zero_()
        self.b_dec.zero_()

    # --- inference ----------------------------------------------------------------------------
    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise ValueError(
                f"SAE{' for ' + self.cfg.hook_name if self.cfg.hook_name else ''} has d_in={self.d_in}, "
                f"but the input's last dimension is {x.shape[-1]}"
            )
        return x.to(self.W_enc.dtype)

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations ``W_enc (x - b_dec) + b_enc`` (before ReLU), shape ``[..., d_sae]``."""
        x = self._check(x)
        return torch.nn.functional.linear(x - self.b_dec, self.W_enc, self.b_enc)

    def default_mode(self) -> str:
        return "threshold" if float(self.threshold) >= 0 else "topk"

    def encode(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """Dense codes ``[..., d_sae]``.

        ``mode``: ``"threshold"`` (JumpReLU with the learned threshold; the default once learned),
        ``"batch_topk"`` (the training rule: top ``k * N`` over all N frames given, N = every
        non-feature dimension), ``"topk"`` (top k per frame; the default without a threshold).
        """
        mode = mode or self.default_mode()
        pre = self.pre_acts(x)
        if mode == "threshold":
            if float(self.threshold) < 0:
                raise ValueError("this SAE has no learned threshold yet; use mode='batch_topk' or 'topk'")
            return jumprelu(pre, self.threshold)  # the workbench's one inference rule (workbench.features)
        if mode == "batch_topk":
            flat = pre.reshape(-1, self.d_sae)
            with torch.no_grad():
                rows, cols, _ = select_batch_topk(flat.detach(), self.k * flat.shape[0])
            z = torch.zeros_like(flat)
            z[rows, cols] = flat[rows, cols]
            return z.reshape(pre.shape)
        if mode == "topk":
            vals, idx = pre.relu().topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, idx, vals)
        raise ValueError(f"unknown encode mode {mode!r}; choose one of {MODES}")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """Reconstruction ``x_hat`` with the same shape as ``x``."""
        return self.decode(self.encode(x, mode))

    # --- training -----------------------------------------------------------------------------
    def training_forward(
        self,
        x: torch.Tensor,
        k: int | None = None,
        dead: torch.Tensor | None = None,
        k_aux: int | None = None,
        auxk_alpha: float = 1 / 32,
        bf16: bool = True,
        dtype: torch.dtype | None = None,
        comm: Collective = LOCAL,
        scratch: Scratch | None = None,
    ) -> TrainOutput:
        """Loss of one batch ``x [N, d_in]`` (already scaled) with batch top-k and AuxK.

        Only the encoder matmul is dense, fused with the selection; decoding and gradients are
        sparse (see :mod:`sae.sparse`). ``dtype`` (default: bfloat16 if ``bf16`` else float32) is
        that of the matmul; the sparse row gathers, sums, loss, parameters and optimizer state stay
        float32. ``dead`` is a bool mask of dead latents for AuxK. Under data-parallel training
        (``comm``, see :mod:`sae.ddp`) ``x`` is this rank's block of the global batch: the top-k
        is taken over the global batch and the losses are this rank's share of the global means.
        ``scratch``: the encoder's reusable chunk buffer (:class:`sae.sparse.Scratch`, kept by the trainer).
        """
        x = self._check(x)
        n_local = x.shape[0]
        n = int(comm.sum(torch.tensor([n_local], dtype=torch.int64))[0])
        k = k or self.k
        dtype = dtype or (torch.bfloat16 if bf16 else torch.float32)
        x_c = x - self.b_dec.detach()
        dead_idx = dead.nonzero().squeeze(1) if dead is not None and bool(dead.any()) else None
        with torch.no_grad(), record_function("sae.encode_select"):
            rows, cols, vals, dead_pre = encode_select(x_c, self.W_enc, self.b_enc, k * n, dtype=dtype, dead_idx=dead_idx,
                                                     scratch=scratch)
            rows, cols, vals = comm.global_top(rows, cols, vals, k * n)
        with record_function("sae.decode"):
            pattern = SparsePattern(rows, cols, n_local, self.d_sae, gather_dtype=GATHER_DTYPE)
            vals = SelectedPreActs.apply(vals, x_c, self.b_dec, self.W_enc, self.b_enc, pattern)
            x_hat = SparseDecode.apply(vals, self.W_dec, pattern) + self.b_dec
            err = x - x_hat
            l2 = err.pow(2).sum() / n
        auxk = err.new_zeros(())
        if dead_idx is not None:
            with record_function("sae.auxk"):
                auxk = self._auxk_loss(err.detach(), dead_pre, dead_idx, x_c, k_aux or self.d_in // 2, GATHER_DTYPE, n,
                                       comm)
        loss = l2 + auxk_alpha * auxk
        return TrainOutput(loss, l2, auxk, x_hat.detach(), pattern, vals.detach())

    def _auxk_loss(self, residual, dead_pre, dead_idx, x_c, k_aux, gather_dtype, n: int,
                   comm: Collective = LOCAL) -> torch.Tensor:
        """AuxK: the top ``k_aux`` dead latents (per frame) reconstruct the residual, no b_dec;
        normalised by the residual's variance over the global batch of ``n`` frames."""
        k_aux = min(int(k_aux), dead_idx.numel())
        with torch.no_grad():
            # the residual's variance over the global batch, from summed moments (float64)
            r = residual.double()
            moments = comm.sum(torch.cat([r.sum(dim=0), r.pow(2).sum().reshape(1)]))
            denom = float(moments[-1] - moments[:-1].pow(2).sum() / n) / n
            vals, idx = dead_pre.relu_().topk(k_aux, dim=1, sorted=False)
            idx, perm = idx.sort(dim=1)  # row-major with ascending columns, as CSR wants
            vals = vals.gather(1, perm).reshape(-1)
            rows = torch.arange(dead_pre.shape[0]).repeat_interleave(k_aux)
            cols = dead_idx[idx.reshape(-1)]  # dead_idx is ascending, so the order carries over
            keep = vals > 0
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        if vals.numel() == 0 or not denom > 0 or not math.isfinite(denom):
            return residual.new_zeros(())
        pattern = SparsePattern(rows, cols, dead_pre.shape[0], self.d_sae, gather_dtype=gather_dtype)
        vals = SelectedPreActs.apply(vals, x_c, self.b_dec, self.W_enc, self.b_enc, pattern)
        aux_hat = SparseDecode.apply(vals, self.W_dec, pattern)
        return (residual - aux_hat).pow(2).sum() / n / denom

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove the gradient component parallel to each (unit) decoder row."""
        g = self.W_dec.grad
        if g is not None:
            g.addcmul_(torch.linalg.vecdot(g, self.W_dec).unsqueeze(1), self.W_dec, value=-1.0)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def folded(self, scale: float) -> "BatchTopKSAE":
        """A copy for raw inputs, from an SAE trained on ``x * scale``.

        ``z_raw = z / scale``: encoder weights and unit decoder rows are unchanged; biases and the
        threshold are divided by ``scale``, so ``sae_raw(x) == sae(x * scale) / scale`` exactly.
        """
        out = copy.deepcopy(self)
        out.b_enc /= scale
        out.b_dec /= scale
        if float(out.threshold) >= 0:
            out.threshold /= scale
        return out
