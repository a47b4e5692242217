"""Spliced-in effect: run the model with a hook's activations replaced by the SAE reconstruction.

For Whisper (models with ``transcribe``): word error rate with and without the splice on clips
with transcripts (jiwer), and the relative error of the final encoder output. For other models:
the relative error of the last hook point. Only real frames are replaced; Whisper's 30 s padding
is left as the model made it (the SAE never saw padding in training).

Example
-------
>>> model = workbench.models.load("whisper-tiny.en")                                 # doctest: +SKIP
>>> spliced_effect(model, sae, "encoder.blocks.3.hook_resid_post", clips, texts)     # doctest: +SKIP
{'wer_clean': 0.05, 'wer_spliced': 0.09, 'wer_change': 0.04, 'rel_error_output': 0.2, ...}
"""
from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm


def normalize_text(s: str) -> str:
    """Lower case, no punctuation (apostrophes kept), single spaces: what WER compares."""
    s = re.sub(r"[^a-z0-9' ]+", " ", s.lower().replace("-", " "))
    return re.sub(r"\s+", " ", s).strip()


def _real_frames(model, hook: str, n_samples: int) -> list[int] | None:
    """Real frames per window the hook sees for one clip, or None when every position is real."""
    if getattr(model, "is_decoder_hook", lambda h: False)(hook):
        return None
    try:
        win = model.max_window_s
        if not win:
            return [model.n_frames(hook, n_samples)]
        w = int(win * model.sample_rate)
        return [model.n_frames(hook, min(w, n_samples - a)) for a in range(0, max(n_samples, 1), w)]
    except (ValueError, NotImplementedError):
        return None


class SpliceFn:
    """``act -> act`` replacing the real frames of each window by ``sae(act)``; also measures the
    reconstruction's relative error there. Set ``windows`` before each clip."""

    def __init__(self, sae, mode: str | None = None) -> None:
        self.sae, self.mode = sae, mode
        self.windows: list[int] | None = None
        self._queue: list[int] = []
        self.sq_err = self.sq_norm = 0.0

    def start(self, windows: list[int] | None) -> None:
        self.windows = windows
        self._queue = list(windows or [])

    @torch.no_grad()
    def __call__(self, act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        rows = act.reshape(-1, *act.shape[-2:]) if act.dim() >= 3 else act.reshape(1, *act.shape)
        out = new.reshape(rows.shape)
        for b in range(rows.shape[0]):
            n = self._queue.pop(0) if self._queue else (None if self.windows is None else 0)
            if self.windows is not None and n == 0:
                continue  # a repeated forward (e.g. generation) past the windows we were told about
            n = rows.shape[1] if n is None else min(n, rows.shape[1])
            x = rows[b, :n].float()
            rec = self.sae(x, self.mode)
            self.sq_err += float((rec - x).pow(2).sum())
            self.sq_norm += float(x.pow(2).sum())
            out[b, :n] = rec.to(act.dtype)
        return new

    @property
    def rel_error(self) -> float:
        return math.sqrt(self.sq_err / self.sq_norm) if self.sq_norm > 0 else float("nan")


def _output_hook(model) -> str | None:
    if hasattr(model, "encoder_output"):
        return None
    return model.hook_points[-1]


@torch.no_grad()
def _outputs(model, audio: np.ndarray, out_hook: str | None) -> torch.Tensor:
    if out_hook is None:
        return model.encoder_output(audio).float()
    return model.run_with_cache(audio, [out_hook])[out_hook].float()


def spliced_effect(model, sae, hook: str, audio: Sequence[np.ndarray], transcripts: Sequence[str | None] | None = None,
                   mode: str | None = None, verbose: bool = True) -> dict:
    """Effect of splicing ``sae`` into ``model`` at ``hook`` over clips ``audio`` (float32 at the model's rate).

    Returns ``rel_error_hook`` (reconstruction error / norm at the hook, real frames),
    ``rel_error_output`` (pooled ``||out_spliced - out|| / ||out||`` of the encoder output or last
    hook point) and, for models with ``transcribe`` and clips with transcripts, ``wer_clean``,
    ``wer_spliced``, ``wer_change`` plus per-clip texts.
    """
    import jiwer

    model.resolve_exact([hook])
    if sae.cfg.hook_name and sae.cfg.hook_name != hook:
        import logging

        logging.getLogger(__name__).warning("SAE was trained on %s, spliced into %s", sae.cfg.hook_name, hook)
    fn = SpliceFn(sae, mode)
    out_hook = _output_hook(model)
    transcripts = list(transcripts) if transcripts is not None else [None] * len(audio)
    can_transcribe = hasattr(model, "transcribe") and getattr(model, "tokenizer", True) is not None
    err = norm = 0.0
    refs, clean, spliced = [], [], []
    for clip, ref in tqdm(list(zip(audio, transcripts)), desc=f"splice {hook}", disable=not verbose):
        clip = np.asarray(clip, dtype=np.float32)
        windows = _real_frames(model, hook, len(clip))
        base = _outputs(model, clip, out_hook)
        fn.start(windows)
        with model.hooks({hook: fn}):
            alt = _outputs(model, clip, out_hook)
        err += float((alt - base).pow(2).sum())
        norm += float(base.pow(2).sum())
        if ref and can_transcribe:
            refs.append(normalize_text(ref))
            clean.append(normalize_text(model.transcribe(clip)))
            fn.start(windows)
            spliced.append(normalize_text(model.transcribe(clip, interventions={hook: fn})))
    result = {"hook": hook, "clips": len(audio), "rel_error_hook": fn.rel_error,
              "rel_error_output": math.sqrt(err / norm) if norm > 0 else float("nan"),
              "output": "encoder_output" if out_hook is None else out_hook}
    if refs:
        wc, ws = jiwer.wer(refs, clean), jiwer.wer(refs, spliced)
        result.update(wer_clean=wc, wer_spliced=ws, wer_change=ws - wc, wer_clips=len(refs),
                      transcripts=[{"reference": r, "clean": c, "spliced": s} for r, c, s in zip(refs, clean, spliced)])
    return result


def corpus_clips(corpus, sample_rate: int, max_clips: int | None = None, domain: str | None = None):
    """``(audio list, transcripts)`` from a corpus, clips with transcripts first (None where absent)."""
    from workbench.audio import load_audio

    clips = [c for c in corpus if domain is None or c.domain == domain]
    clips = sorted(clips, key=lambda c: not c.transcript)  # stable: corpus order within each group
    clips = clips[:max_clips] if max_clips else clips
    return [load_audio(corpus.audio_path(c), sr=sample_rate) for c in clips], [c.transcript for c in clips]
