"""The end-of-transcript objective scores what greedy decoding can emit at the first text position.

tiny.en begin-suppresses ``<|endoftext|>`` there and suppresses ``<|nocaptions|>`` everywhere, so an
objective on those two raw logits rewards a choice decoding never makes (the optimised vector trained
on it left the transcripts of non-speech unchanged). Random-init Whisper, no weights.
"""
from __future__ import annotations

import numpy as np
import torch

from sae.steer.attribution import encoder_suffix, end_ids, end_logprob, first_step_mask, hook_windows, silent_tokens
from workbench.models.whisper import random_whisper

HOOK = "encoder.blocks.0.hook_resid_post"


class _PunctTokenizer:
    """ids 0-2 are punctuation-only, 3 opens a bracket, 4 is a quote, the rest words."""

    unk_token_id = 95
    text = {0: "...", 1: " .", 2: " -", 3: " (", 4: '"'}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.text.get(int(i), f" w{int(i)}") if int(i) < 88 else "" for i in ids)

    def convert_tokens_to_ids(self, name):
        return self.unk_token_id


def _enc(model):
    x, _ = hook_windows(model, HOOK, [np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)])
    return encoder_suffix(model, HOOK, x)


def test_silent_tokens_are_punctuation_only_never_brackets_or_words():
    model = random_whisper(seed=0)
    model.tokenizer = _PunctTokenizer()
    assert silent_tokens(model) == [0, 1, 2]
    assert end_ids(model) == [0, 1, 2, model._eot]


def test_suppressed_end_tokens_are_not_counted_at_the_first_step():
    model = random_whisper(seed=0)
    enc = _enc(model)
    with torch.no_grad():
        free = float(end_logprob(model, enc)[0])
        prompt = torch.tensor([model.prompt_ids()])
        logits = model.hf(encoder_outputs=(enc,), decoder_input_ids=prompt, use_cache=False).logits[0, -1].float()
        assert np.isclose(free, float(logits.log_softmax(-1)[model._eot]), atol=1e-5)
        # begin-suppress end-of-text as tiny.en does: the objective must move to the tokens still allowed
        model.hf.generation_config.begin_suppress_tokens = [model._eot]
        model.tokenizer = _PunctTokenizer()
        model._steer_end_ids = None
        assert first_step_mask(model) == [model._eot]
        masked = float(end_logprob(model, enc)[0])
    keep = torch.ones_like(logits, dtype=torch.bool)
    keep[model._eot] = False
    want = logits.masked_fill(~keep, -float("inf")).log_softmax(-1)[[0, 1, 2]].logsumexp(-1)
    assert np.isclose(masked, float(want), atol=1e-5)
    assert not np.isclose(masked, free, atol=1e-3)
