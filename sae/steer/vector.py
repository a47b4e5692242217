"""An optimised steering vector: the non-SAE baseline a user would train by gradient descent.

A vector ``v`` is added to every frame at the hook (``x' = x + v``) and trained with Adam to make the
decoder end the transcript on the concept's clips (maximise ``log p(end)`` at the first text position,
:func:`sae.steer.attribution.end_logprob`) while keeping the decoder's distribution on the other clips
(KL from the plain decoding's next-token distributions along the plain greedy transcript, teacher
forced, first ``kl_tokens`` positions), with an L2 penalty relative to the typical activation norm::

    loss = -mean_concept log p(end) + kl_weight * mean_rest KL(plain || steered) + l2 * |v|^2 / |x|^2

Only the encoder blocks after the hook run in each step (activations are captured once). The
artifact stores ``v`` as a ``vector`` steering with edit ``add``: ``x + s v`` (``s`` swept on dev clips).
The hook may be ``encoder.ln_post.hook_normalized``: the vector is then added to the encoder output
itself, i.e. to the input of every decoder block's cross-attention (no encoder block runs in training).
``extra_hooks``: one vector per further hook, trained jointly (activations are captured at the earliest
hook, and each vector is added after its own block); the L2 penalty is on all of them (stored as the
artifact's ``layers``).

Example
-------
>>> from workbench.models.whisper import random_whisper
>>> import numpy as np
>>> model = random_whisper(seed=0)
>>> clips = [np.random.default_rng(i).normal(0, 0.1, 8000).astype(np.float32) for i in range(4)]
>>> res = optimise_vector(model, "encoder.blocks.0.hook_resid_post", clips, [True, False, True, False],
...                       steps=3, verbose=False)
>>> len(res["vector"]), len(res["loss"])
(64, 3)
>>> two = optimise_vector(model, "encoder.blocks.1.hook_resid_post", clips, [True, False, True, False], steps=2,
...                       verbose=False, extra_hooks=["encoder.blocks.0.hook_resid_post"])
>>> [x["hook"] for x in two["layers"]], len(two["layers"][0]["direction"])
(['encoder.blocks.0.hook_resid_post'], 64)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from sae.steer.attribution import AFTER_LN_POST, block_of, encoder_suffix, end_logprob, hook_windows


def _teacher_logprobs(model, enc: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return model.hf(encoder_outputs=(enc,), decoder_input_ids=ids, use_cache=False).logits.float().log_softmax(-1)


def _suffix(model, start: str, x: torch.Tensor, adds: dict[int, torch.Tensor]) -> torch.Tensor:
    """The encoder's output from activations at hook ``start`` with ``adds[L]`` added after block ``L``."""
    if set(adds) == {block_of(start)}:
        return encoder_suffix(model, start, x + adds[block_of(start)])
    enc = model.hf.model.encoder
    h = (x + adds.get(block_of(start), 0)).to(model.hf.dtype)
    for i in range(block_of(start) + 1, len(enc.layers)):
        out = enc.layers[i](h, None)
        h = out[0] if isinstance(out, tuple) else out
        if i in adds:
            h = h + adds[i].to(h.dtype)
    h = enc.layer_norm(h)
    return h + adds[AFTER_LN_POST].to(h.dtype) if AFTER_LN_POST in adds else h


def optimise_vector(model, hook: str, audio: Sequence[np.ndarray] | None, concept: Sequence[bool], steps: int = 60,
                    lr: float = 0.005, kl_weight: float = 1.0, l2: float = 0.1, kl_tokens: int = 12,
                    batch_size: int = 8, seed: int = 0, verbose: bool = True,
                    windows: tuple[torch.Tensor, list[int]] | None = None, extra_hooks: Sequence[str] = ()) -> dict:
    """Train ``v`` (see module doc) on fit clips; returns ``{"vector", "layers", "loss", "end_logprob", "kl", ...}``.

    ``windows``: ``(X [clips, 1500, D], real frames)`` captured at the earliest hook, instead of ``audio``."""
    concept = np.asarray(concept, dtype=bool)
    if concept.all() or not concept.any():
        raise ValueError("the optimised vector needs clips of both classes")
    blocks = {block_of(h): h for h in [hook, *extra_hooks]}
    if len(blocks) != 1 + len(extra_hooks):
        raise ValueError(f"one vector per block: {[hook, *extra_hooks]} repeats a block")
    start = blocks[min(blocks)]  # activations are captured at the earliest hook
    if windows is None:
        xs, ns = [], []
        for a in range(0, len(audio), batch_size):
            x, n = hook_windows(model, start, audio[a : a + batch_size])
            xs.append(x)
            ns += n
        X = torch.cat(xs)
    else:
        X, ns = windows
    scale = float(torch.cat([X[i, :k] for i, k in enumerate(ns)]).norm(dim=-1).mean())
    rest = np.flatnonzero(~concept)
    with torch.no_grad():  # plain decoding of the rest: its tokens and next-token distributions
        # only the first kl_tokens positions are compared: decode no further (a looping transcript would run to 448)
        seqs = [s[:-1][: len(model.prompt_ids()) + kl_tokens] for r in range(0, len(rest), batch_size)
                for s in model._generate(encoder_hidden=encoder_suffix(model, start, X[rest[r : r + batch_size]]),
                                         max_new_tokens=kl_tokens + 1)]
        width = max(len(s) for s in seqs)
        ids = torch.stack([torch.nn.functional.pad(s, (0, width - len(s)), value=model._eot) for s in seqs])
        mask = torch.stack([torch.arange(width) < len(s) for s in seqs]).float()
        plain = _teacher_logprobs(model, encoder_suffix(model, start, X[rest]), ids)
    vs = {b: torch.zeros(X.shape[-1], requires_grad=True) for b in blocks}
    opt = torch.optim.Adam(list(vs.values()), lr=lr * scale)
    rng = np.random.default_rng(seed)
    history = {"loss": [], "end_logprob": [], "kl": []}
    c_idx = np.flatnonzero(concept)
    for _ in tqdm(range(steps), desc="optimise vector", disable=not verbose, leave=False):
        bc = rng.choice(c_idx, min(batch_size, len(c_idx)), replace=False)
        br = rng.choice(len(rest), min(batch_size, len(rest)), replace=False)
        with torch.enable_grad():
            end = end_logprob(model, _suffix(model, start, X[bc], vs)).mean()
            lp = _teacher_logprobs(model, _suffix(model, start, X[rest[br]], vs), ids[br])
            kl = ((plain[br].exp() * (plain[br] - lp)).sum(-1) * mask[br]).sum() / mask[br].sum()
            loss = -end + kl_weight * kl + l2 * sum(v @ v for v in vs.values()) / scale**2
            # the gradients of the vectors alone: backward() would also fill every model weight's .grad (half its work)
            for v, g in zip(vs.values(), torch.autograd.grad(loss, list(vs.values()))):
                v.grad = g
            opt.step()
        history["loss"].append(float(loss.detach()))
        history["end_logprob"].append(float(end.detach()))
        history["kl"].append(float(kl.detach()))
    v = vs[block_of(hook)].detach()
    layers = [{"hook": h, "direction": vs[block_of(h)].detach().tolist()} for h in extra_hooks]
    return {"vector": v.tolist(), "layers": layers, "norm": float(v.norm()), "activation_norm": scale,
            "steps": steps, "lr": lr, "kl_weight": kl_weight, "l2": l2, "kl_tokens": kl_tokens, **history}
