"""Causal feature choice: attribution patching of the decoder's decision to end the transcript.

The decision is ``m = log p(end)`` at the first text position of greedy decoding (after
``<|startoftranscript|> ... <|notimestamps|>``), where "end" is every token that starts a transcript
counted as empty (:func:`end_ids`): ``<|endoftext|>``, ``<|nospeech|>`` where the vocabulary has one,
and tokens that are punctuation only (``...``, ``.``, ``-``: they normalise to nothing). Whisper's
suppress and begin-suppress rules are applied to the logits first, as greedy decoding applies them:
tiny.en can never emit ``<|endoftext|>`` at that position (begin-suppressed) nor ``<|nocaptions|>``
(suppressed), so an objective on the raw logits of those two rewards a choice decoding never makes. With the SAE spliced in at the hook so that the forward pass is
unchanged (``x = W_dec z + b_dec + error``, the error held fixed), the attribution of an edit that
changes the codes by ``dz`` is ``grad_z m . dz``, summed over a clip's real frames; for the ``scale``
edit ``dz = z`` (gradient x activation), for ``clamp_target`` ``dz = target - z``. Every feature gets a
score per clip in one backward pass per batch.

A feature is selected when its per-clip attribution separates the concept's clips from the others
(Cohen's d over clips above the 95th percentile of the max-statistic under group permutations of the
clip labels: shuffled labels select nothing) and its mean attribution on concept clips exceeds that on
the rest; candidates are ranked by that difference and the best are *confirmed by patching*: each is
actually edited alone and the exact change of ``m`` measured (:func:`patch_effects`).

Whisper only (the hook must be ``encoder.blocks.L.hook_resid_post``, or ``encoder.ln_post.hook_normalized``:
the encoder output every decoder block's cross-attention reads): the layers after the hook are run
directly on captured activations, so patching and the optimised vector (:mod:`sae.steer.vector`) do
not recompute the encoder's first blocks.

Example
-------
>>> from workbench.models.whisper import random_whisper
>>> import numpy as np
>>> model = random_whisper(seed=0)
>>> acts, n = hook_windows(model, "encoder.blocks.0.hook_resid_post", [np.zeros(8000, np.float32)])
>>> tuple(acts.shape), n
((1, 1500, 64), [25])
>>> float(end_logprob(model, encoder_suffix(model, "encoder.blocks.0.hook_resid_post", acts)).detach()[0]) < 0
True
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

_HOOK = re.compile(r"^encoder\.blocks\.(\d+)\.hook_resid_post$")
#: the encoder output after its last LayerNorm (what the decoder's cross-attention reads)
ENCODER_OUT = "encoder.ln_post.hook_normalized"
#: :func:`block_of` of :data:`ENCODER_OUT`: after every block (and after ``ln_post``)
AFTER_LN_POST = 1 << 20


def block_of(hook: str) -> int:
    """The encoder block whose output ``hook`` reads (:data:`AFTER_LN_POST` for :data:`ENCODER_OUT`)."""
    if hook == ENCODER_OUT:
        return AFTER_LN_POST
    m = _HOOK.match(hook)
    if not m:
        raise ValueError("attribution and the optimised vector act at encoder.blocks.L.hook_resid_post or "
                         f"{ENCODER_OUT}, not {hook!r}")
    return int(m.group(1))


@torch.no_grad()
def hook_windows(model, hook: str, audio: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
    """Whole-window activations ``[B, 1500, D]`` at ``hook`` (padding included: the decoder attends
    to it) and each clip's real frame count. Clips must be at most 30 s."""
    if any(len(a) > model.max_window_s * model.sample_rate for a in audio):
        raise ValueError("attribution works on clips of at most 30 s (one Whisper window)")
    captured = {}

    def grab(act):
        captured["x"] = act.detach().float()
        return act

    with model.hooks({hook: grab}):
        model.hf.model.encoder(model._features(list(audio)))
    return captured["x"], [model.n_frames(hook, len(a)) for a in audio]


def encoder_suffix(model, hook: str, x: torch.Tensor) -> torch.Tensor:
    """The encoder's output from activations at ``hook`` (the blocks after it, then ``ln_post``)."""
    if hook == ENCODER_OUT:
        return x.to(model.hf.dtype)
    enc = model.hf.model.encoder
    h = x.to(model.hf.dtype)
    for layer in enc.layers[block_of(hook) + 1 :]:
        out = layer(h, None)
        h = out[0] if isinstance(out, tuple) else out
    return enc.layer_norm(h)


# punctuation that ends or pauses, not brackets or quotes (those open "(music)" or "[MUSIC]")
_SILENT = re.compile(r"[\s.,!?;:\-\u2026\u266a]+")


def silent_tokens(model) -> list[int]:
    """Token ids whose text is punctuation only (a transcript made of them normalises to empty)."""
    from workbench.text import normalize_text

    tok = model.tokenizer
    if tok is None:
        return []
    n = int(model.hf.config.vocab_size)
    out = []
    for i in range(n):
        text = tok.decode([i], skip_special_tokens=True)
        if text.strip() and _SILENT.fullmatch(text) and not normalize_text(text):
            out.append(i)
    return out


def end_ids(model) -> list[int]:
    """Tokens that start an empty transcript: end-of-text, no-speech (where known), punctuation only.
    Computed once per model (cached on it)."""
    cached = getattr(model, "_steer_end_ids", None)
    if cached is None:
        cached = [model._eot]
        if model.tokenizer is not None and model.no_speech_token_id is not None:
            cached.append(model.no_speech_token_id)
        cached = sorted(set(cached) | set(silent_tokens(model)))
        model._steer_end_ids = cached
    return cached


def first_step_mask(model) -> list[int]:
    """Token ids greedy decoding cannot emit at the first text position (Whisper's suppress and
    begin-suppress lists of the generation config)."""
    gen = model.hf.generation_config
    return sorted(set(getattr(gen, "suppress_tokens", None) or []) | set(getattr(gen, "begin_suppress_tokens", None) or []))


def end_logprob(model, enc: torch.Tensor) -> torch.Tensor:
    """``log p(end)`` at the first text position for each row of encoder output ``enc`` ``[B]``, with the
    tokens decoding cannot emit there masked out (see the module doc)."""
    prompt = torch.tensor(model.prompt_ids(), device=enc.device).expand(enc.shape[0], -1)
    logits = model.hf(encoder_outputs=(enc,), decoder_input_ids=prompt, use_cache=False).logits[:, -1].float()
    masked = first_step_mask(model)
    if masked:
        logits = logits.index_fill(-1, torch.tensor(masked, device=logits.device), -float("inf"))
    allowed = [i for i in end_ids(model) if i not in set(masked)]
    if not allowed:
        raise ValueError(f"{model.name}: every end token is suppressed at the first position")
    return logits.log_softmax(-1)[:, allowed].logsumexp(-1)


def _delta(z: torch.Tensor, change: str, target: torch.Tensor | None) -> torch.Tensor:
    if change == "scale":
        return z
    if change == "clamp_target":
        return target - z
    raise ValueError(f"change must be 'scale' or 'clamp_target', got {change!r}")


def attribution(model, fd, hook: str, audio: Sequence[np.ndarray], change: str = "scale",
                target: np.ndarray | None = None, batch_size: int = 4, verbose: bool = True) -> np.ndarray:
    """Per-clip attribution ``[clips, d_sae]``: ``sum over real frames of dm/dz * dz`` (see module doc)."""
    tgt = None if target is None else torch.as_tensor(target, dtype=torch.float32)
    out = np.zeros((len(audio), fd.d_sae), dtype=np.float64)
    for a in tqdm(range(0, len(audio), batch_size), desc="attribution", disable=not verbose, leave=False):
        x, n = hook_windows(model, hook, audio[a : a + batch_size])
        with torch.no_grad():
            z0 = fd.encode(x)
            err = x - fd.decode(z0)
        z = z0.clone().requires_grad_(True)
        with torch.enable_grad():
            m = end_logprob(model, encoder_suffix(model, hook, z @ fd.W_dec + fd.b_dec + err))
            (grad,) = torch.autograd.grad(m.sum(), z)
        contrib = grad * _delta(z0, change, tgt)
        for i, k in enumerate(n):
            out[a + i] = contrib[i, :k].sum(0).double().numpy()
    return out


@torch.no_grad()
def patch_effects(model, steering, audio: Sequence[np.ndarray], candidates: Sequence[int], strength: float,
                  batch_size: int = 8, verbose: bool = True) -> np.ndarray:
    """Exact change of ``m`` per clip when each candidate feature alone is edited: ``[clips, candidates]``.

    ``steering`` supplies the hook, SAE and edit (its features must include the candidates' records).
    """
    hook = steering.hook
    out = np.zeros((len(audio), len(candidates)))
    for a in tqdm(range(0, len(audio), batch_size), desc="patching", disable=not verbose, leave=False):
        x, _ = hook_windows(model, hook, audio[a : a + batch_size])
        base = end_logprob(model, encoder_suffix(model, hook, x))
        for j, f in enumerate(candidates):
            edit = steering.with_(features=[f], strength=strength).edit_fn()
            out[a : a + len(x), j] = (end_logprob(model, encoder_suffix(model, hook, edit(x))) - base).numpy()
    return out
