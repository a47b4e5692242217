"""The spliced-in effect (``sae.splice``) beyond Whisper: a trained SAE in HuBERT (small change) against
an untrained one (large change), codec models compared on their last *float* hook, and clips longer than
one of HuBERT's windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sae import BatchTopKSAE, SAEConfig, TrainConfig, train
from sae.splice import spliced_effect
from fake_saes import Recorder, Zero

SR = 16000
pytestmark = pytest.mark.usefixtures("one_thread")


def _clips(n, seconds=1.0, seed=0):
    """Tones of random pitch in noise, one family: held-out clips come from the training distribution."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return [(0.2 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.05 * rng.standard_normal(len(t)))
            .astype(np.float32) for _ in range(n)]


def test_trained_sae_in_hubert_changes_little_untrained_changes_much():
    from workbench.models.hubert import random_hubert

    model = random_hubert("hubert", seed=0)
    hook = "encoder.blocks.0.hook_resid_post"
    clips = _clips(20, seed=2)
    X = torch.cat([a[hook] for a in model.run_with_cache(clips[:16], [hook])])
    cfg = TrainConfig(expansion=4, k=8, tokens=256 * 80, batch_size=256, lr=3e-3, threads=1)
    sae = train({hook: X}, cfg=cfg, verbose=False)[hook]
    held_out = clips[16:]  # clips the SAE never saw
    trained = spliced_effect(model, sae, hook, held_out, verbose=False)
    untrained = spliced_effect(model, BatchTopKSAE(SAEConfig(d_in=32, expansion=4, k=8),
                                                   torch.Generator().manual_seed(0)), hook, held_out,
                               mode="topk", verbose=False)
    print("hubert splice: trained", trained["rel_error_hook"], trained["rel_error_output"],
          "untrained", untrained["rel_error_hook"], untrained["rel_error_output"])
    assert trained["output"] == model.hook_points[-1] and "wer_clean" not in trained
    assert trained["rel_error_hook"] < 0.5 and trained["rel_error_output"] < 0.5
    # measured: trained 0.40 at the hook / 0.38 at the output, untrained 0.92 / 0.72
    assert untrained["rel_error_hook"] > 2 * trained["rel_error_hook"]
    assert untrained["rel_error_output"] > 1.5 * trained["rel_error_output"]


@pytest.mark.parametrize("kind", ["dac", "mimi"])
def test_codec_splice_is_measured_on_the_last_float_hook(kind):
    from workbench.models.codec import random_codec

    model = random_codec(kind, seed=0)
    hook = "encoder.blocks.1.hook_out"
    clip = (0.1 * np.random.default_rng(1).standard_normal(model.sample_rate // 2)).astype(np.float32)
    same = spliced_effect(model, Recorder(), hook, [clip], verbose=False)
    assert same["output"] == "hook_latent"  # not quantizer.hook_codes: code indices are not vectors
    assert same["rel_error_hook"] == 0.0 and same["rel_error_output"] == 0.0
    zero = spliced_effect(model, Zero(), hook, [clip], verbose=False)
    assert zero["rel_error_hook"] == pytest.approx(1.0) and zero["rel_error_output"] > 0.05


@pytest.mark.parametrize("model_type,pad", [("wav2vec2", True), ("hubert", False)])  # padded / equal-length batches
def test_hubert_clip_longer_than_one_window_is_spliced_everywhere(model_type, pad):
    from workbench.models.hubert import random_hubert

    model = random_hubert(model_type, seed=0, pad_batches=pad)
    assert model.equal_lengths_only is not pad
    model.processor.do_normalize = False
    model.window_s = 0.2  # stands in for a clip over 30 s: five windows for a 1 s clip
    hook = "encoder.blocks.0.hook_resid_post"
    clip = _clips(1)[0]
    assert len(model.window_frames(hook, len(clip))) == 5
    rec = Recorder()
    spliced_effect(model, rec, hook, [clip], verbose=False)
    assert rec.rows == model.n_frames(hook, len(clip)) == 49
