"""Frame time vs receptive field: each adapter's frame centre measured by perturbing the audio.

A frame's receptive field is the span of samples whose change changes that frame. The adapters
derive their frame grid from their front ends (``AudioModel.frame_grid``); these tests measure the
span on the model itself and check that its midpoint is the frame's centre, which is also the
midpoint of the frame table's start/end (``frame_times``). The old rule, frame i at
(i + 1/2) x hop, is half a frame late for Whisper (10 ms) and the cochleagram (2.5 ms) and
2.47 ms early for HuBERT's stem.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

SR = 16000


def _support(frame_of, base: np.ndarray, lo: int, hi: int, amp: float = 0.05, tol: float = 1e-5) -> tuple[int, int]:
    """First and last sample in ``[lo, hi]`` whose impulse changes ``frame_of(audio)`` (bisection on
    each side of the middle, which must be inside the receptive field)."""
    ref = frame_of(base)

    def changes(p: int) -> bool:
        x = base.copy()
        x[p] += amp
        return float((frame_of(x) - ref).abs().max()) > tol * max(1.0, float(ref.abs().max()))

    mid = (lo + hi) // 2
    assert changes(mid), "the middle of the search range is outside the receptive field"
    a, b = lo, mid  # changes(b) is True; find the first True
    assert not changes(a)
    while b - a > 1:
        m = (a + b) // 2
        a, b = (a, m) if changes(m) else (m, b)
    first = b
    a, b = mid, hi
    assert not changes(b)
    while b - a > 1:
        m = (a + b) // 2
        a, b = (m, b) if changes(m) else (a, m)
    return first, a


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


@pytest.mark.slow
def test_whisper_frame_centre_is_the_middle_of_its_receptive_field(tiny_en_wheel):
    """Real tiny.en: encoder frame 40 reads 0.7675-0.8325 s, centre 0.800 s (the old table said 0.810 s)."""
    from workbench.models import load

    torch.set_num_threads(1)
    model = load("whisper-tiny.en")
    hook = "encoder.hook_conv_out"
    base = _noise(1.6)
    base[int(1.3 * SR):] *= 8  # a loud part far from frame 40 fixes the log-mel's global max

    def frame40(x):
        return model.run_with_cache(x, [hook])[hook][40]

    first, last = _support(frame40, base, int(0.74 * SR), int(0.86 * SR))
    centre = model.frame_centres(hook, 41)[40]
    assert abs((first + last) / 2 / SR - centre) < 0.5e-3, (first / SR, last / SR, centre)
    # mel frames 78-82 (their Hann windows' far tails move the frame less than the tolerance)
    assert abs(first / SR - 0.7675) < 2e-3 and abs(last / SR - 0.8325) < 2e-3
    start, end = model.frame_times(hook, 41)[40]
    assert (start + end) / 2 == pytest.approx(0.800) and model.frame_grid("encoder.blocks.3.hook_resid_post") == \
        model.frame_grid(hook)


def test_hubert_frame_centre_is_the_middle_of_its_conv_stem():
    """Random-init wav2vec2-layout stem (LayerNorm per frame, no per-clip normalisation, so the
    receptive field is exact): frame 40 reads samples 12800-13199, centre 20 x 40 + 12.47 ms."""
    from workbench.models.hubert import random_hubert

    torch.manual_seed(0)
    model = random_hubert("wav2vec2")
    model.processor.do_normalize = False
    hook = "feature_extractor.hook_conv_out"

    def frame40(x):
        return model.run_with_cache(x, [hook])[hook][40]

    first, last = _support(frame40, _noise(1.2), 12_500, 13_500)
    assert (first, last) == (12_800, 13_199)
    centre = model.frame_centres(hook, 41)[40]
    assert centre == pytest.approx((first + last) / 2 / SR)
    assert model.frame_times(hook, 41)[40].mean() == pytest.approx(centre)
    assert model.frame_grid("encoder.blocks.1.hook_resid_post") == model.frame_grid(hook)


def test_cochleagram_frame_centre_is_where_an_impulse_peaks():
    """An impulse at sample 80 k gives an envelope symmetric about frame k (old table: k + 1/2)."""
    from workbench.models.cochleagram import HOOK, CochleagramModel

    model = CochleagramModel()
    x = np.zeros(SR // 2, np.float32)
    k = 40
    x[80 * k] = 1.0
    env = model.run_with_cache(x, ["cochleagram.hook_envelope"])["cochleagram.hook_envelope"].double()
    w = env.sum(1).numpy()
    w = np.clip(w - np.median(w), 0, None)
    centres = model.frame_centres(HOOK, len(w))
    peak_time = float((w * centres).sum() / w.sum())
    assert abs(peak_time - 80 * k / SR) < 0.3e-3, peak_time
    assert int(np.argmax(w)) == k
    assert model.frame_times(HOOK, len(w))[k].mean() == pytest.approx(80 * k / SR)
