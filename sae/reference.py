"""A readable, dense Batch-Top-K training step: the reference the fast sparse trainer is tested against.

Written in the style of dictionary_learning's ``BatchTopKTrainer`` (``trainers/batch_top_k.py``):
``nn.Linear`` encoder and decoder, the whole ``[N, d_sae]`` code matrix in memory, autograd for every
gradient. :mod:`sae.train` computes the same step with the sparse kernels of :mod:`sae.sparse`;
``tests/test_sae_reference.py`` checks that both give the same loss, gradients and parameter update
(float32, to float tolerance). The step, in order:

1. encode ``post = ReLU(W_enc (x - b_dec) + b_enc)``; keep the ``k * N`` largest entries of the batch;
2. decode ``x_hat = f W_dec + b_dec``; ``l2 = mean over frames of ||x - x_hat||^2``;
3. AuxK: the top ``d_in // 2`` dead latents of each frame (dead: no firing for ``dead_after_tokens``
   frames *before* this batch) decode the detached residual (no ``b_dec``); their squared error is
   divided by the residual's variance; ``loss = l2 + auxk_alpha * auxk``;
4. backward; remove the decoder gradient's component parallel to each unit decoder atom; clip the
   gradient norm to ``grad_clip``; Adam at ``lr * lr_factor(step)``; renormalise the decoder atoms;
5. firing counters; from ``threshold_start`` on, the JumpReLU threshold follows an EMA (``threshold_ema``)
   of the batch's smallest selected activation (the batch top-k cut).

Where dictionary_learning differs (the fast path follows the list above, and so does this file): its
threshold averages each frame's smallest active value instead of taking the batch's smallest; it counts
the current batch's frames before deciding which latents are dead; its threshold starts after (not at)
``threshold_start_step``; and its schedule, warm-up and k annealing are its own.

Example
-------
>>> from sae.config import TrainConfig
>>> ae = ReferenceSAE(d_in=8, d_sae=32, k=2, generator=torch.Generator().manual_seed(0))
>>> trainer = ReferenceTrainer(ae, TrainConfig(expansion=4, k=2, tokens=64, batch_size=16))
>>> stats = trainer.update(0, torch.randn(16, 8, generator=torch.Generator().manual_seed(1)))
>>> stats["l0"], bool(torch.allclose(ae.decoder.weight.norm(dim=0), torch.ones(32)))
(2.0, True)
"""
from __future__ import annotations

import torch
from torch import nn

from sae.config import TrainConfig


class ReferenceSAE(nn.Module):
    """Batch-Top-K SAE in dictionary_learning's layout: ``decoder.weight`` is ``[d_in, d_sae]``
    (column j = atom j; :class:`sae.model.BatchTopKSAE` stores its transpose as ``W_dec``)."""

    def __init__(self, d_in: int, d_sae: int, k: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.k = k
        self.encoder = nn.Linear(d_in, d_sae)
        self.decoder = nn.Linear(d_sae, d_in, bias=False)
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("threshold", torch.tensor(-1.0))
        with torch.no_grad():
            w = torch.randn(d_in, d_sae, generator=generator)
            self.decoder.weight.copy_(w / w.norm(dim=0, keepdim=True))
            self.encoder.weight.copy_(self.decoder.weight.t())
            self.encoder.bias.zero_()

    @classmethod
    def from_sae(cls, sae) -> "ReferenceSAE":
        """A copy of a :class:`sae.model.BatchTopKSAE` (same weights, threshold and k)."""
        ref = cls(sae.d_in, sae.d_sae, sae.k)
        with torch.no_grad():
            ref.encoder.weight.copy_(sae.W_enc)
            ref.encoder.bias.copy_(sae.b_enc)
            ref.decoder.weight.copy_(sae.W_dec.t())
            ref.b_dec.copy_(sae.b_dec)
            ref.threshold.copy_(sae.threshold)
        return ref

    def encode(self, x: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes, post_relu)``: the batch top-k codes and all ReLU'd pre-activations, both ``[N, d_sae]``."""
        post_relu = torch.relu(self.encoder(x - self.b_dec))
        flat = post_relu.flatten()
        top = flat.topk((k or self.k) * x.shape[0], sorted=False)
        codes = torch.zeros_like(flat).scatter(-1, top.indices, top.values).reshape(post_relu.shape)
        return codes, post_relu

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.decoder(f) + self.b_dec


class ReferenceTrainer:
    """One dense training step at a time (:meth:`update`), with the recipe of a :class:`TrainConfig`."""

    def __init__(self, ae: ReferenceSAE, cfg: TrainConfig) -> None:
        self.ae, self.cfg = ae, cfg
        d_in, d_sae = ae.decoder.weight.shape
        self.lr = cfg.lr_for(d_sae)
        self.k_aux = d_in // 2  # heuristic of Gao et al. (2024), appendix B.1
        self.optimizer = torch.optim.Adam(ae.parameters(), lr=self.lr, betas=cfg.betas)
        self.since_fired = torch.zeros(d_sae, dtype=torch.long)

    def auxk_loss(self, residual: torch.Tensor, post_relu: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        """Normalised error of the top-``k_aux`` dead latents reconstructing the (detached) residual."""
        if not dead.any():
            return residual.new_zeros(())
        k_aux = min(self.k_aux, int(dead.sum()))
        masked = torch.where(dead[None], post_relu, -torch.inf)
        acts, idx = masked.topk(k_aux, dim=-1, sorted=False)
        aux_hat = self.ae.decoder(torch.zeros_like(post_relu).scatter(-1, idx, acts))
        l2_aux = (residual - aux_hat).pow(2).sum(dim=-1).mean()
        denom = (residual - residual.mean(dim=0)).pow(2).sum(dim=-1).mean()
        return (l2_aux / denom).nan_to_num(0.0)

    def loss(self, x: torch.Tensor, step: int):
        """``(loss, l2, auxk, codes)`` of batch ``x`` at ``step`` (counters are not touched)."""
        dead = self.since_fired >= self.cfg.dead_after_tokens
        f, post_relu = self.ae.encode(x, self.cfg.k_at(step))
        e = x - self.ae.decode(f)
        l2 = e.pow(2).sum(dim=-1).mean()
        auxk = self.auxk_loss(e.detach(), post_relu, dead)
        return l2 + self.cfg.auxk_alpha * auxk, l2, auxk, f

    def update(self, step: int, x: torch.Tensor) -> dict:
        """One optimiser step on batch ``x [N, d_in]`` (already scaled); returns the step's statistics."""
        ae, cfg = self.ae, self.cfg
        loss, l2, auxk, f = self.loss(x, step)
        self.optimizer.zero_grad()
        loss.backward()
        W = ae.decoder.weight
        with torch.no_grad():  # keep the unit-norm constraint: no gradient along each atom
            W.grad -= (W.grad * W).sum(dim=0, keepdim=True) * W
        torch.nn.utils.clip_grad_norm_(ae.parameters(), cfg.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * cfg.lr_factor(step)
        self.optimizer.step()
        with torch.no_grad():
            W /= W.norm(dim=0, keepdim=True)
            self.since_fired += x.shape[0]
            self.since_fired[(f > 0).any(dim=0)] = 0
            if step >= cfg.threshold_start and (f > 0).any():
                smallest, beta = f[f > 0].min(), cfg.threshold_ema
                ae.threshold.copy_(smallest if ae.threshold < 0 else beta * ae.threshold + (1 - beta) * smallest)
        loss, l2, auxk = (float(t.detach()) for t in (loss, l2, auxk))
        return {"loss": loss, "l2": l2, "auxk": auxk, "l0": float((f > 0).sum()) / x.shape[0],
                "threshold": float(ae.threshold)}
