"""Cochleagram: filterbank design, tone localisation, silence floor, frame count, reference match, adapter."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from workbench.models import load
from workbench.models.cochleagram import (ENVELOPE_HOOK, HOOK, Cochleagram, CochleagramConfig, CochleagramModel, erb2freq,
                                          erb_cos_filters, freq2erb, n_channels)

SR = 16000


# tiny models and small tensor ops: intra-op threads only add overhead (see conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def coch() -> Cochleagram:
    return Cochleagram()


def tone(freq: float, seconds: float = 0.5, amp: float = 0.3) -> torch.Tensor:
    t = np.arange(int(seconds * SR)) / SR
    return torch.tensor(amp * np.sin(2 * np.pi * freq * t), dtype=torch.float32)


def test_channel_count_formula_and_centres(coch):
    assert n_channels(50, 4) == 4 * (50 + 1) - 1 + 2 * 4 == 211
    assert n_channels(50, 1) == 52 and n_channels(50, 2) == 105
    assert coch.n_channels == 211
    cfs = coch.centre_frequencies
    assert cfs.shape == (211,) and np.all(np.diff(cfs) > 0)
    bandpass = cfs[4:-4]
    # interior points of 205 ERB-spaced points from 50 Hz to 8 kHz
    spacing = (freq2erb(8000.0) - freq2erb(50.0)) / 204
    assert bandpass[0] == pytest.approx(erb2freq(freq2erb(50.0) + spacing))
    assert bandpass[-1] == pytest.approx(erb2freq(freq2erb(8000.0) - spacing))
    assert np.allclose(np.diff(freq2erb(bandpass)), spacing)


def test_filters_tile_the_spectrum():
    freqs = np.linspace(0, SR / 2, 4001)
    filters, cfs = erb_cos_filters(freqs)
    filters = filters.numpy()
    assert filters.shape == (211, 4001)
    # the squared responses sum to one everywhere (what makes the filterbank invertible)
    assert np.allclose((filters**2).sum(0), 1.0, atol=1e-9)
    # each band-pass filter peaks at its centre frequency with height 1 / sqrt(sample_factor)
    peak, _ = erb_cos_filters(cfs[4:-4])
    assert np.allclose(np.diag(peak.numpy()[4:-4]), 0.5)
    # DC is carried by the low-pass edges alone (flat 0.5), Nyquist by the high-pass edges and
    # the top band-pass filters (whose upper halves reach past it, as in pycochleagram)
    assert np.allclose(filters[:4, 0], 0.5) and np.all(filters[4:, 0] == 0)
    assert np.all(filters[-4:, -1] > 0) and np.all(filters[:-8, -1] == 0)


@pytest.mark.parametrize("freq", [150.0, 440.0, 1000.0, 2500.0, 4200.0, 6000.0])
def test_pure_tone_peaks_in_nearest_channel(coch, freq):
    out = coch(tone(freq))[0]  # [211, frames]
    profile = out[:, 10:-10].mean(-1).numpy()  # steady state
    nearest = int(np.argmin(np.abs(coch.centre_frequencies - freq)))
    assert int(profile.argmax()) == nearest
    # and the peak is a real peak: far channels are near the silence floor
    far = np.abs(freq2erb(coch.centre_frequencies) - freq2erb(freq)) > 3
    assert profile[far].max() < 0.25 * profile.max()


def test_two_tones_give_two_peaks(coch):
    out = coch(tone(500.0) + tone(3000.0))[0, :, 10:-10].mean(-1).numpy()
    cfs = coch.centre_frequencies
    for f in (500.0, 3000.0):
        near = np.abs(freq2erb(cfs) - freq2erb(f)) < 0.5
        assert out[near].max() > 4 * np.median(out)


def test_silence_gives_flat_floor(coch):
    out = coch(torch.zeros(2, 12345))
    assert out.shape == (2, 211, math.ceil(12345 / 80))
    floor = 1e-8**0.3
    assert float(out.max() - out.min()) < 1e-7
    assert float(out.mean()) == pytest.approx(floor, rel=1e-4) and floor < 0.01


@pytest.mark.parametrize("n", [1, 79, 80, 81, 12345, 16000])
def test_frame_count(coch, n):
    assert coch(torch.randn(n)).shape[-1] == math.ceil(n / 80) == coch.n_frames(n)


def _textbook_filters(freqs: np.ndarray, n: int = 50, low: float = 50.0, high: float = 8000.0, sf: int = 4):
    """pycochleagram's ERB half-cosine filterbank written out from its definition (numpy only, none of
    the module's helpers): ``sf * (n + 1) - 1`` band-pass filters centred on the interior points of an
    ERB-number grid, half-width ``sf`` grid steps; ``sf`` low-pass and ``sf`` high-pass edges
    ``sqrt(1 - bp^2)`` below / above the outermost centres; everything / sqrt(sf)."""
    erb = lambda f: 9.265 * np.log(1 + f / (24.7 * 9.265))  # noqa: E731  Glasberg & Moore
    hz = lambda e: 24.7 * 9.265 * (np.exp(e / 9.265) - 1)  # noqa: E731
    n_bp = sf * (n + 1) - 1
    grid = np.linspace(erb(low), erb(high), n_bp + 2)
    centres, half = grid[1:-1], sf * (grid[1] - grid[0])
    dist = erb(freqs)[None, :] - centres[:, None]
    bp = np.where(np.abs(dist) < half, np.cos(np.pi * dist / (2 * half)), 0.0)
    edge = np.sqrt(np.clip(1 - bp**2, 0, None))
    low_edges = np.where(freqs[None, :] < hz(centres[:sf])[:, None], edge[:sf], 0.0)
    high_edges = np.where(freqs[None, :] > hz(centres[-sf:])[:, None], edge[-sf:], 0.0)
    return np.concatenate([low_edges, bp, high_edges]) / np.sqrt(sf)


def test_filterbank_matches_its_textbook_definition():
    freqs = np.linspace(0, SR / 2, 3001)
    ours, _ = erb_cos_filters(freqs)
    np.testing.assert_allclose(ours.numpy(), _textbook_filters(freqs), atol=1e-9)


def _reference(x: np.ndarray, n_fft: int) -> np.ndarray:
    """Dense textbook pipeline, none of the module's code: the filters above on the rfft grid of
    ``n_fft`` points, scipy.signal.hilbert envelopes, a full linear convolution with the firwin
    kernel, every 80th sample, compression. (The grid length is shared with the module: filters
    sampled on another grid have other impulse responses, up to 4e-3 apart in the low channels.)"""
    n = len(x)
    filters = _textbook_filters(np.fft.rfftfreq(n_fft, 1 / SR))
    subbands = np.fft.irfft(np.fft.rfft(x, n_fft)[None] * filters, n_fft)
    env = np.abs(scipy.signal.hilbert(subbands, axis=-1))[:, :n]
    k = scipy.signal.firwin(1001, 100, window=("kaiser", 5.0), fs=SR)
    down = scipy.signal.fftconvolve(env, k[None], axes=-1)[:, 500 : 500 + n : 80]
    return (np.maximum(down, 0) + 1e-8) ** 0.3


def test_matches_dense_reference():
    rng = np.random.default_rng(0)
    t = np.arange(int(0.5 * SR)) / SR
    x = 0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 700 * t) * (t > 0.2)
    exact = Cochleagram(decimate=False)
    ref = _reference(x, exact._fft_length(len(x)))
    got = exact(torch.tensor(x, dtype=torch.float32))[0].numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 2e-3
    # the decimated fast path is a close approximation of the literal pipeline
    fast = Cochleagram()(torch.tensor(x, dtype=torch.float32))[0].numpy()
    err = np.abs(fast - ref)
    assert err.mean() < 5e-4 and np.quantile(err, 0.999) < 2e-2


def test_long_input_is_chunked_seamlessly():
    x = torch.randn(1, int(2.6 * SR)) * 0.1
    whole = Cochleagram()(x)
    chunked = Cochleagram(chunk_s=1.0)(x)
    assert chunked.shape == whole.shape
    err = (chunked - whole).abs()
    assert float(err.mean()) < 1e-3
    seams = err[..., [199, 200, 201, 399, 400, 401]]
    assert float(seams.mean()) < 2e-3


def test_batch_rows_match_single_clips(coch):
    x = torch.randn(3, 8000) * 0.1
    batch = coch(x)
    for i in range(3):
        assert torch.allclose(batch[i], coch(x[i])[0], atol=1e-5)
    assert coch(x[:, None]).shape == batch.shape  # [B, 1, T] is accepted too


def test_bad_inputs_and_config():
    with pytest.raises(ValueError, match="expected audio"):
        Cochleagram()(torch.zeros(2, 2, 100))
    with pytest.raises(ValueError, match="Nyquist"):
        CochleagramConfig(high_lim=9000)
    with pytest.raises(ValueError, match="sample_factor"):
        CochleagramConfig(sample_factor=3)


def test_model_adapter_contract():
    model = load("cochleagram")
    assert isinstance(model, CochleagramModel) and model.hook_points == [ENVELOPE_HOOK, HOOK]
    assert model.frame_rate(HOOK) == model.frame_rate(ENVELOPE_HOOK) == 200.0 and model.sample_rate == SR
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 1234)]
    base = model.run_with_cache(clips, model.hook_points)
    for clip, out in zip(clips, base):
        assert out[HOOK].shape == out[ENVELOPE_HOOK].shape == (math.ceil(len(clip) / 80), 211)
        assert torch.allclose(out[HOOK], (out[ENVELOPE_HOOK].clamp_min(0) + 1e-8) ** 0.3)
    # batching does not change a clip's cochleagram
    assert torch.equal(model.run_with_cache(clips[1], [HOOK])[HOOK], base[1][HOOK])
    with model.hooks({ENVELOPE_HOOK: lambda a: a, HOOK: lambda a: a}):
        same = model.run_with_cache(clips, model.hook_points)
    assert all(torch.equal(a[h], b[h]) for a, b in zip(base, same) for h in model.hook_points)
    with model.hooks({ENVELOPE_HOOK: lambda a: a * 0}):  # silencing the envelope -> the flat floor
        floor = model.run_with_cache(clips, [HOOK])
    assert torch.allclose(floor[0][HOOK], torch.full_like(base[0][HOOK], 1e-8**0.3))
    with model.hooks({HOOK: lambda a: a * 0}):
        zeroed = model.run_with_cache(clips, [HOOK])
    assert not torch.equal(zeroed[0][HOOK], base[0][HOOK]) and float(zeroed[0][HOOK].abs().max()) == 0.0
    with pytest.raises(ValueError, match="cochleagram"):
        load("cochleagram-large")
