"""Codec encoders (EnCodec, DAC, Mimi) on tiny random-init models."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import transformers  # noqa: F401  (a declared dependency: missing must fail, not skip)

from workbench.models import codec  # noqa: E402
from workbench.models.hubert import HubModelUnavailableError  # noqa: E402


KINDS = ["encodec", "dac", "mimi"]  # tiny layouts with the real strides (codec.TINY_CONFIGS)
LATENT_RATE = {"encodec": 75.0, "dac": 50.0, "mimi": 12.5}
BLOCK_STRIDES = {"encodec": [2, 8, 40, 320], "dac": [2, 8, 40, 320], "mimi": [4, 20, 120, 960]}


def make(kind: str, **kwargs):
    return codec.random_codec(kind, seed=0, **kwargs)


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    return make(request.param)


# tiny models and small tensor ops: intra-op threads only add overhead (see conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


def clip(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.1


def test_hook_points_and_frame_rates(model):
    sr = model.sample_rate
    blocks = model.resolve_hooks("encoder.blocks.*.hook_out")
    assert [model.frame_rate(h) for h in blocks] == [sr / s for s in BLOCK_STRIDES[model.kind]]
    assert model.frame_rate("hook_latent") == LATENT_RATE[model.kind]
    assert model.frame_rate("quantizer.hook_codes") == LATENT_RATE[model.kind]
    if model.kind == "mimi":
        layers = model.resolve_hooks("encoder_transformer.blocks.*.hook_resid_post")
        assert len(layers) == 2 and {model.frame_rate(h) for h in layers} == {25.0}
        assert model.frame_rate("encoder.hook_out") == 25.0


@pytest.mark.parametrize("seconds", [0.25, 0.1337])
def test_shapes_match_frame_count(model, seconds):
    n = int(seconds * model.sample_rate)
    acts = model.run_with_cache(clip(n, 1), model.hook_points)
    for h, a in acts.items():
        t = math.ceil(n * model.frame_rate(h) / model.sample_rate)
        assert a.ndim == 2 and abs(a.shape[0] - t) <= 1, (h, a.shape, t)
        assert a.shape[0] == model.n_frames(h, n)
    assert acts["quantizer.hook_codes"].shape[1] == model.n_codebooks


def test_batch_of_unequal_lengths_matches_single_clips(model):
    sr = model.sample_rate
    a, b = clip(sr // 5, 2), clip(sr // 7 + 3, 3)
    hooks = model.hook_points
    batch = model.run_with_cache([a, b, a], hooks)
    singles = [model.run_with_cache(c, hooks) for c in (a, b)]
    for got, want in zip(batch, singles + singles[:1]):
        for h in hooks:
            assert got[h].shape == want[h].shape, h
            if h == "quantizer.hook_codes":
                assert torch.equal(got[h], want[h])
            else:
                torch.testing.assert_close(got[h], want[h], atol=1e-5, rtol=1e-4)


def test_codes_are_integer_tracks_matching_transformers_encode(model):
    n = model.sample_rate // 4
    x = clip(n, 4)
    codes = model.run_with_cache(x, ["quantizer.hook_codes"])["quantizer.hook_codes"]
    assert codes.dtype == torch.int64
    assert codes.min() >= 0 and codes.max() < model.codebook_size
    assert codes.unique().numel() > 1  # random codebooks: codes carry information
    hf = model.hf_model
    wav = torch.from_numpy(x)[None, None]
    with torch.no_grad():
        if model.kind == "encodec":
            ref = hf.encode(wav, bandwidth=max(hf.config.target_bandwidths)).audio_codes[0, 0]
        elif model.kind == "dac":
            pad = -n % model.hop_length  # DAC's feature extractor pads to a multiple of the hop
            ref = hf.encode(torch.nn.functional.pad(wav, (0, pad))).audio_codes[0]
        else:
            ref = hf.encode(wav).audio_codes[0]
    assert torch.equal(codes, ref.T[: codes.shape[0]])


def test_identity_intervention_is_bit_identical_and_zeroing_changes(model):
    x = clip(model.sample_rate // 5, 5)
    hooks = model.hook_points
    base = model.run_with_cache(x, hooks)
    edited = ["encoder.blocks.0.hook_out", "hook_latent"]
    if model.kind == "mimi":
        edited.append("encoder_transformer.blocks.0.hook_attn_out")
    for h in edited:
        with model.hooks({h: lambda a: a}):
            same = model.run_with_cache(x, hooks)
        assert all(torch.equal(same[k], base[k]) for k in hooks), h
    with model.hooks({"encoder.blocks.0.hook_out": torch.zeros_like}):
        zeroed = model.run_with_cache(x, ["hook_latent"])["hook_latent"]
    assert not torch.allclose(zeroed, base["hook_latent"], atol=1e-6)
    if model.kind == "mimi":
        with model.hooks({"encoder_transformer.blocks.0.hook_attn_out": torch.zeros_like}):
            zeroed = model.run_with_cache(x, ["hook_latent"])["hook_latent"]
        assert not torch.allclose(zeroed, base["hook_latent"], atol=1e-6)


@torch.no_grad()
def _reference_codes(model, latent: torch.Tensor) -> torch.Tensor:
    """Codes of a ``[T, D]`` latent, without the adapter: EnCodec by a hand-written greedy residual VQ
    (nearest codebook row by Euclidean distance, subtract, next codebook); DAC and Mimi by
    transformers' own quantizer API (``forward`` / ``encode``)."""
    q, x = model.hf_model.quantizer, latent.T[None]  # [1, D, T]
    if model.kind == "encodec":
        residual, codes = latent.double(), []
        for layer in q.layers[: model.n_codebooks]:
            book = layer.codebook.embed.double()  # [bins, D]
            idx = torch.cdist(residual, book).argmin(dim=1)
            residual = residual - book[idx]
            codes.append(idx)
        return torch.stack(codes, dim=1)
    if model.kind == "dac":
        return q(x, model.n_codebooks)[1][0].T  # audio_codes [1, K, T]
    return q.encode(x, model.n_codebooks)[:, 0].T  # [K, 1, T]


def test_codes_follow_an_edited_latent(model):
    """Interventions on the latent reach the codes: they are quantised from the edited stream."""
    x = clip(model.sample_rate // 5, 6)
    latent = model.run_with_cache(x, ["hook_latent"])["hook_latent"]
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0)) * 10 * latent.std()
    with model.hooks({"hook_latent": lambda a: a + noise}):
        out = model.run_with_cache(x, ["hook_latent", "quantizer.hook_codes"])
    torch.testing.assert_close(out["hook_latent"], latent + noise)
    assert torch.equal(out["quantizer.hook_codes"], _reference_codes(model, out["hook_latent"]))
    assert not torch.equal(out["quantizer.hook_codes"], model.run_with_cache(x, ["quantizer.hook_codes"])["quantizer.hook_codes"])


def test_intervention_sees_batch_time_first():
    model = make("dac")
    seen = []
    with model.hooks({"encoder.blocks.1.hook_out": lambda a: seen.append(a.shape) or a}):
        model.run_with_cache(clip(3200, 7), ["hook_latent"])
    assert seen == [torch.Size([1, 400, 16])]  # 3200 samples / stride 8, 16 channels


def test_n_codebooks_limits_code_tracks():
    model = make("mimi", n_codebooks=2)
    codes = model.run_with_cache(clip(4800, 8), ["quantizer.hook_codes"])["quantizer.hook_codes"]
    assert codes.shape == (math.ceil(4800 / 1920), 2)
    with pytest.raises(ValueError, match="n_codebooks"):
        make("mimi", n_codebooks=9)


def test_load_from_local_directory(tmp_path):
    """The real loading path (from_pretrained) on a saved tiny checkpoint, through the registry."""
    from workbench.models import load

    original = make("dac")
    original.hf_model.save_pretrained(tmp_path)
    model = load(str(tmp_path))
    assert isinstance(model, codec.CodecAudioModel) and model.kind == "dac"
    x = clip(4000, 9)
    hooks = ["hook_latent", "quantizer.hook_codes"]
    got, want = model.run_with_cache(x, hooks), original.run_with_cache(x, hooks)
    torch.testing.assert_close(got["hook_latent"], want["hook_latent"])
    assert torch.equal(got["quantizer.hook_codes"], want["quantizer.hook_codes"])


@pytest.mark.parametrize("spec", ["facebook/encodec_24khz", "descript/dac_16khz", "kyutai/mimi"])
def test_offline_hub_id_fails_with_clear_message(spec, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    from workbench.models import load

    with pytest.raises(HubModelUnavailableError, match=r"hub is unreachable.*--local-dir DIR"):
        load(spec)
