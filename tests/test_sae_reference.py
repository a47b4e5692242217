"""The fast sparse trainer (sae.model.training_forward + sae.train._train_step) against the dense
reference step of sae.reference (dictionary_learning style): same loss, gradients and parameter
updates to float tolerance, on small random problems with dead latents (so AuxK is live), on both
paths of the fused encoder (one matmul for small batches, chunked for large ones)."""
from __future__ import annotations

import pytest
import torch

from sae.config import SAEConfig, TrainConfig
from sae.model import BatchTopKSAE
from sae.reference import ReferenceSAE, ReferenceTrainer
from sae.sparse import _SMALL
from sae.train import _adam, _HookState, _train_step

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _problem(n: int, d: int, expansion: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sae = BatchTopKSAE(SAEConfig(d_in=d, expansion=expansion, k=k), generator=g)
    with torch.no_grad():  # trained-looking biases, so every term of the gradient is exercised
        sae.b_enc.copy_(0.1 * torch.randn(sae.d_sae, generator=g))
        sae.b_dec.copy_(0.3 * torch.randn(d, generator=g))
    x = torch.randn(n, d, generator=g) * (1 + torch.rand(n, 1, generator=g))
    since = torch.zeros(sae.d_sae, dtype=torch.long)
    since[::3] = 10_000  # every third latent is dead
    return sae, x, since


def _cfg(n: int, steps: int, **kw) -> TrainConfig:
    return TrainConfig(k=kw.pop("k", 4), tokens=n * steps, batch_size=n, lr=kw.pop("lr", 1e-3),
                       dead_after_tokens=10_000, dtype="float32", **kw)


def _pairs(sae: BatchTopKSAE, ref: ReferenceSAE, grad: bool = False):
    """(fast, reference) tensors (or their gradients) that must agree, in the fast layout."""
    def get(p):
        return p.grad if grad else p.detach()
    return {"W_enc": (get(sae.W_enc), get(ref.encoder.weight)), "b_enc": (get(sae.b_enc), get(ref.encoder.bias)),
            "W_dec": (get(sae.W_dec), get(ref.decoder.weight).t()), "b_dec": (get(sae.b_dec), get(ref.b_dec))}


@pytest.mark.parametrize("n,d,expansion", [(96, 16, 8), (512, 64, 8)], ids=["one-matmul", "chunked"])
def test_same_loss_and_gradients(n, d, expansion):
    sae, x, since = _problem(n, d, expansion, k=4)
    assert (n * sae.d_sae > _SMALL * 4) == (n == 512)  # the second case runs the chunked encoder
    ref = ReferenceSAE.from_sae(sae)
    cfg = _cfg(n, 10)
    trainer = ReferenceTrainer(ref, cfg)
    trainer.since_fired = since.clone()

    out = sae.training_forward(x, k=4, dead=since >= cfg.dead_after_tokens, k_aux=d // 2,
                               auxk_alpha=cfg.auxk_alpha, dtype=torch.float32)
    out.loss.backward()
    loss, l2, auxk, f = trainer.loss(x, step=0)
    loss.backward()
    assert float(auxk.detach()) > 0  # AuxK is part of the comparison
    torch.testing.assert_close(out.l2, l2, **TOL)
    torch.testing.assert_close(out.auxk, auxk, **TOL)
    torch.testing.assert_close(out.loss, loss, **TOL)
    assert out.pattern.nnz == int((f > 0).sum()) == 4 * n
    torch.testing.assert_close(out.pattern.to_dense(out.vals), f.detach(), **TOL)
    for name, (fast, slow) in _pairs(sae, ref, grad=True).items():
        torch.testing.assert_close(fast, slow, **TOL, msg=lambda m: f"gradient of {name}: {m}")


def test_same_updates_over_several_steps():
    """Eight full steps (decoder projection, clipping, warm-up/decay, Adam, renormalisation, firing
    counters, threshold EMA from step 1 on): parameters, threshold and counters agree after each."""
    n, d = 128, 16
    sae, _, since = _problem(n, d, 8, k=4, seed=1)
    cfg = _cfg(n, 8, grad_clip=0.5, threshold_start_step=1)
    assert cfg.threshold_start == 1 and cfg.warmup == 1
    ref = ReferenceSAE.from_sae(sae)
    trainer = ReferenceTrainer(ref, cfg)
    trainer.since_fired = since.clone()
    state = _HookState(sae, _adam(sae, cfg), 1.0, since.clone())
    g, auxk = torch.Generator().manual_seed(2), []
    for step in range(cfg.steps):
        x = torch.randn(n, d, generator=g)
        fast = _train_step(state, x, step, cfg, torch.float32)
        slow = trainer.update(step, x)
        auxk.append(fast["auxk"])
        for key in ("loss", "l2", "auxk", "l0", "threshold"):
            assert fast[key] == pytest.approx(slow[key], rel=1e-4, abs=1e-6), (step, key)
        for name, (a, b) in _pairs(sae, ref).items():
            torch.testing.assert_close(a, b, **TOL, msg=lambda m: f"step {step}, {name}: {m}")
        torch.testing.assert_close(sae.threshold, ref.threshold, **TOL)
        assert torch.equal(state.since_fired, trainer.since_fired)
    assert float(sae.threshold) > 0 and auxk[0] > 0  # the threshold and AuxK were both exercised
