"""Core bench figures: reconstruction (FVU, per-frame relative error, with and without Whisper's
massive-norm frames), sparsity (L0, dead and dense features), and the effect on the model with the
SAE spliced in (WER of greedy transcripts, and the decoder's KL divergence on teacher-forced
reference transcripts).

Example
-------
>>> core_metrics(sae, X)["rel_error_median_no_massive"]                                 # doctest: +SKIP
>>> decoder_kl(model, sae, "encoder.blocks.3.hook_resid_post", clips, texts)         # doctest: +SKIP
{'kl_mean': 0.04, 'kl_median': 0.01, 'tokens': 160, 'clips': 5}
"""
from __future__ import annotations

import math

import numpy as np
import torch

def core_metrics(sae, X: torch.Tensor, norm_limit: float | None = None, chunk: int = 8192) -> dict:
    """:func:`sae.metrics.evaluate` on all frames, plus FVU, relative errors and L0 without massive
    frames (suffix ``_no_massive``; :mod:`sae.massive`: above ``norm_limit``, the SAE's training
    filter, or 10x the median norm when it trained on every frame), ``massive_frac`` and ``massive_limit``."""
    from sae.massive import split_massive
    from sae.metrics import evaluate

    X = torch.as_tensor(X).float()
    m = evaluate(sae, X.split(chunk))
    out = {k: m[k] for k in ("frames", "fvu", "rel_error_median", "rel_error_mean", "rel_error_q90", "l0",
                             "dead_frac", "dense_frac", "cosine")}
    massive, limit = split_massive(X, norm_limit)
    out.update(massive_frac=float(massive.mean()), massive_limit=limit)
    normal = X[torch.from_numpy(~massive)]
    if len(normal):
        n = evaluate(sae, normal.split(chunk))
        out.update({f"{k}_no_massive": n[k] for k in ("fvu", "rel_error_median", "rel_error_mean", "l0")})
    out["density"] = m["density"]
    return out


@torch.no_grad()
def decoder_kl(model, sae, hook: str, audio, transcripts, n_tokens: int = 32, norm_limit: float | None = None) -> dict:
    """KL(clean || spliced) of Whisper's next-token distributions over the first ``n_tokens``
    teacher-forced tokens of each reference transcript (first 30 s window of each clip), the SAE's
    reconstruction replacing the real frames at ``hook``. Models without a text decoder: ``{}``."""
    from sae.splice import SpliceFn, _real_frames

    if not all(hasattr(model, a) for a in ("hf", "prompt_ids", "tokenizer")) or model.tokenizer is None:
        return {}
    kls = []
    fn = SpliceFn(sae, norm_limit=norm_limit)
    win = int(model.max_window_s * model.sample_rate)
    prompt = model.prompt_ids()
    n_clips = 0
    for clip, ref in zip(audio, transcripts):
        if not ref:
            continue
        clip = np.asarray(clip, dtype=np.float32)[:win]
        text_ids = model.tokenizer.encode(" " + ref.strip(), add_special_tokens=False)[:n_tokens]
        ids = torch.tensor([prompt + text_ids], dtype=torch.long, device=model.device)
        feats = model.feature_extractor([clip], sampling_rate=model.sample_rate, return_tensors="pt").input_features
        feats = feats.to(model.device, model.hf.dtype)

        clean = _logits(model, feats, ids)
        windows = _real_frames(model, hook, len(clip))
        fn.start(windows[:1] if windows else None)
        with model.hooks({hook: fn}):
            spliced = _logits(model, feats, ids)
        pos = slice(len(prompt) - 1, len(prompt) - 1 + len(text_ids))
        lp, lq = clean[pos].log_softmax(-1), spliced[pos].log_softmax(-1)
        kls.append((lp.exp() * (lp - lq)).sum(-1).numpy())
        n_clips += 1
    if not kls:
        return {}
    k = np.concatenate(kls)
    return {"kl_mean": float(k.mean()), "kl_median": float(np.median(k)), "kl_q90": float(np.quantile(k, 0.9)),
            "kl_tokens": len(k), "kl_clips": n_clips, "kl_n_tokens": n_tokens}


def _logits(model, feats: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    enc = model.hf.model.encoder(feats).last_hidden_state
    return model.hf(encoder_outputs=(enc,), decoder_input_ids=ids, use_cache=False).logits.float()[0]


def splice_metrics(model, sae, hook: str, cache, clip_ids, n_clips: int = 5, n_tokens: int = 32,
                   verbose: bool = False, clean_memo: dict | None = None, norm_limit: float | None = None) -> dict:
    """Spliced WER (:func:`sae.splice.spliced_effect`) and :func:`decoder_kl` on up to ``n_clips``
    held-out clips with transcripts (``clip_ids`` of ``cache``'s corpus)."""
    from sae.splice import select_clips, spliced_effect
    from workbench.audio import load_audio

    chosen = [c for c in select_clips(cache.corpus, clip_ids=clip_ids) if c.transcript][:n_clips]
    if not chosen:
        return {}
    audio = [load_audio(cache.corpus.audio_path(c), sr=model.sample_rate) for c in chosen]
    texts = [c.transcript for c in chosen]
    res = spliced_effect(model, sae, hook, audio, texts, verbose=verbose, ids=[c.id for c in chosen],
                         domains=[c.domain for c in chosen], clean_memo=clean_memo, norm_limit=norm_limit)
    out = {k: res[k] for k in ("wer_clean", "wer_spliced", "wer_change", "wer_clips", "rel_error_output")
           if k in res and not (isinstance(res[k], float) and math.isnan(res[k]))}
    out.update(decoder_kl(model, sae, hook, audio, texts, n_tokens, norm_limit))
    return out
