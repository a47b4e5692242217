"""HuBERT / wav2vec2 adapter on tiny random-init models (no weights can be had offline)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import transformers  # a declared dependency: missing must fail, not skip

from workbench.models import hubert  # noqa: E402
from workbench.models.base import UnknownHookError  # noqa: E402

SR = 16000
KINDS = ["hubert", "wav2vec2"]  # GroupNorm stem + post-LN; LayerNorm stem + pre-LN (hubert.TINY_CONFIGS)


def make(kind: str):
    return hubert.random_hubert(kind, seed=0)


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    return make(request.param)


# tiny models and small tensor ops: intra-op threads only add overhead (see conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


def clip(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.1


def expected_frames(n: int) -> int:
    return (n - 400) // 320 + 1


def final_hook(model) -> str:
    return "encoder.layer_norm.hook_out" if model.hf_model.config.do_stable_layer_norm else model.hook_points[-1]


def test_hook_points_and_rates(model):
    names = model.hook_points
    assert names[:2] == ["feature_extractor.hook_conv_out", "feature_projection.hook_out"]
    for i in range(2):
        for h in ("hook_attn_out", "hook_mlp_out", "hook_resid_post"):
            assert f"encoder.blocks.{i}.{h}" in names
    assert "encoder.layer_norm.hook_out" in names
    assert all(model.frame_rate(h) == 50.0 for h in names)
    assert model.resolve_hooks("encoder.blocks.*.hook_resid_post") == [
        "encoder.blocks.0.hook_resid_post",
        "encoder.blocks.1.hook_resid_post",
    ]
    with pytest.raises(UnknownHookError, match="Valid hook points"):
        model.run_with_cache(clip(1000, 0), ["encoder.blocks.7.hook_resid_post"])


def test_uses_transformer_lens_bridge(model):
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge import TransformerBridge

    assert isinstance(model.bridge, TransformerBridge)
    assert all(isinstance(m, HookPoint) for m in model.hook_modules().values())


@pytest.mark.parametrize("n", [8000, 5555])
def test_shapes_match_frame_count(model, n):
    acts = model.run_with_cache(clip(n, 1), model.hook_points)
    t = expected_frames(n)
    assert abs(t - math.ceil(n * 50 / SR)) <= 1
    for h, a in acts.items():
        width = 16 if h == "feature_extractor.hook_conv_out" else 32
        assert a.shape == (t, width), h
        assert model.n_frames(h, n) == t
        assert torch.isfinite(a).all()


def test_batch_of_unequal_lengths_matches_single_clips(model):
    a, b = clip(8000, 2), clip(5555, 3)
    hooks = model.hook_points
    batch = model.run_with_cache([a, b], hooks)
    for single, got in zip([model.run_with_cache(a, hooks), model.run_with_cache(b, hooks)], batch):
        assert all(torch.equal(got[h], single[h]) for h in hooks)  # default: never padded


def test_padded_batches_with_attention_mask_match_single_clips():
    """pad_batches on a LayerNorm stem: padding + mask must not leak into the real frames."""
    model = hubert.random_hubert("wav2vec2", pad_batches=True)
    assert not model.equal_lengths_only
    assert hubert.random_hubert("hubert", pad_batches=True).equal_lengths_only  # GroupNorm: never padded
    a, b = clip(8000, 2), clip(5555, 3)
    hooks = model.hook_points
    seen = []
    with model.hooks({"feature_projection.hook_out": lambda x: seen.append(x.shape) or x}):
        batch = model.run_with_cache([a, b], hooks)
    assert seen == [torch.Size([2, expected_frames(8000), 32])]  # one padded pass
    for single, got in zip([model.run_with_cache(a, hooks), model.run_with_cache(b, hooks)], batch):
        for h in hooks:
            assert got[h].shape == single[h].shape
            torch.testing.assert_close(got[h], single[h], atol=1e-5, rtol=1e-4)


def test_matches_plain_transformers_forward():
    """The bridge must not change the numbers: compare with an untouched copy of the HF model."""
    for kind in KINDS:
        reference = make(kind).hf_model  # same seed, same weights, never wrapped
        model = make(kind)
        assert reference is not model.hf_model
        x = clip(6400, 4)
        feats = model.processor(x, sampling_rate=SR, return_tensors="pt")
        with torch.no_grad():
            want = reference(feats["input_values"]).last_hidden_state[0]
        got = model.run_with_cache(x, [final_hook(model)])[final_hook(model)]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_identity_intervention_is_bit_identical_and_zeroing_changes(model):
    x = clip(7000, 5)
    out = final_hook(model)
    base = model.run_with_cache(x, [out])[out]
    for h in ("feature_extractor.hook_conv_out", "encoder.blocks.0.hook_attn_out", "encoder.blocks.0.hook_resid_post"):
        with model.hooks({h: lambda a: a}):
            assert torch.equal(model.run_with_cache(x, [out])[out], base), h
        with model.hooks({h: lambda a: torch.zeros_like(a)}):
            assert not torch.allclose(model.run_with_cache(x, [out])[out], base, atol=1e-4), h


def test_intervention_sees_batch_time_first(model):
    seen = []
    with model.hooks({"feature_extractor.hook_conv_out": lambda a: seen.append(a.shape) or a}):
        model.run_with_cache(clip(4000, 6), ["feature_projection.hook_out"])
    assert seen == [torch.Size([1, expected_frames(4000), 16])]


def test_short_clip_gives_no_frames(model):
    acts = model.run_with_cache(clip(300, 7), ["encoder.blocks.1.hook_resid_post"])
    assert acts["encoder.blocks.1.hook_resid_post"].shape == (0, 32)


def test_long_clips_are_windowed_on_the_frame_grid():
    """Conv features are local: windows cut on frame boundaries reproduce the one-pass frames."""
    model = make("wav2vec2")  # LayerNorm stem: no statistics across time
    model.processor.do_normalize = False  # per-window normalisation would differ from per-clip
    x = clip(12345, 8)
    full = model.run_with_cache(x, ["feature_extractor.hook_conv_out"])["feature_extractor.hook_conv_out"]
    model.window_s = 0.1  # 5 frames per window
    windowed = model.run_with_cache(x, ["feature_extractor.hook_conv_out"])["feature_extractor.hook_conv_out"]
    assert windowed.shape == full.shape == (expected_frames(12345), 16)
    torch.testing.assert_close(windowed, full, atol=1e-5, rtol=1e-4)


def test_load_from_local_directory(tmp_path):
    """The real loading path (from_pretrained) on a saved tiny checkpoint, through the registry."""
    from workbench.models import load

    torch.manual_seed(0)  # the bridge rewires a model in place (no save_pretrained after): use a plain one
    hf = transformers.HubertModel(make("hubert").hf_model.config).eval()
    hf.save_pretrained(tmp_path)
    hubert._default_processor(hf.config).save_pretrained(tmp_path)
    model = load(str(tmp_path))
    assert isinstance(model, hubert.HubertAudioModel)
    x = clip(6000, 9)
    got = model.run_with_cache(x, ["encoder.blocks.1.hook_resid_post"])["encoder.blocks.1.hook_resid_post"]
    with torch.no_grad():
        want = hf(model.processor(x, sampling_rate=SR, return_tensors="pt")["input_values"]).last_hidden_state[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("spec", ["facebook/hubert-base-ls960", "facebook/wav2vec2-base"])
def test_offline_hub_id_fails_with_clear_message(spec, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    from workbench.models import load

    with pytest.raises(hubert.HubModelUnavailableError, match=r"hub is unreachable.*--local-dir DIR.*load\('DIR'\)"):
        load(spec)
