"""``workbench models``: ``info`` for non-Whisper adapters (cochleagram, a saved DAC, a saved HuBERT) and
``transcribe`` through the command line on real whisper-tiny.en (clear espeak speech: no ../shared)."""
from __future__ import annotations

import json

import pytest
import soundfile as sf

from workbench.cli import main


def _info(spec, capsys) -> dict:
    assert main(["models", "info", spec, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    return {h["name"]: (h["frame_rate"], h["d_model"]) for h in info["hooks"]}


def test_info_cochleagram(capsys):
    hooks = _info("cochleagram", capsys)
    n_channels = 4 * (50 + 1) - 1 + 2 * 4  # pycochleagram: 203 band-pass + 8 edge filters
    assert hooks == {"cochleagram.hook_envelope": (200.0, n_channels), "cochleagram.hook_out": (200.0, n_channels)}
    assert main(["models", "info", "cochleagram"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()
            if line.strip().startswith("cochleagram.")}
    assert rows == {"cochleagram.hook_envelope": ["200", "211"], "cochleagram.hook_out": ["200", "211"]}


def test_info_saved_dac_directory(tmp_path, capsys):
    from workbench.models.codec import random_codec

    random_codec("dac", seed=0).hf_model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    hooks = _info(str(tmp_path), capsys)
    # 16 kHz through strides 2, 4, 5, 8 (cumulative 2, 8, 40, 320)
    rates = [hooks[f"encoder.blocks.{i}.hook_out"][0] for i in range(4)]
    assert rates == [8000.0, 2000.0, 400.0, 50.0]
    assert hooks["hook_latent"] == (50.0, cfg["hidden_size"])
    assert hooks["quantizer.hook_codes"] == (50.0, cfg["n_codebooks"])  # one integer column per codebook


def test_info_saved_hubert_directory(tmp_path, capsys):
    import transformers

    from workbench.models.hubert import _default_processor, random_hubert

    config = random_hubert("hubert").hf_model.config
    transformers.HubertModel(config).save_pretrained(tmp_path)
    _default_processor(config).save_pretrained(tmp_path)
    hooks = _info(str(tmp_path), capsys)
    assert {rate for rate, _ in hooks.values()} == {50.0}  # one frame per 320 samples
    assert hooks["feature_extractor.hook_conv_out"][1] == config.conv_dim[-1]
    assert hooks["encoder.blocks.1.hook_resid_post"] == (50.0, config.hidden_size)
    assert sum(name.startswith("encoder.blocks.") for name in hooks) == 3 * config.num_hidden_layers


def test_transcribe_refuses_models_without_a_decoder(tmp_path, capsys):
    wav = tmp_path / "x.wav"
    sf.write(wav, [0.0] * 1600, 16000)
    assert main(["models", "transcribe", "cochleagram", str(wav)]) == 2
    assert "cannot transcribe" in capsys.readouterr().err


@pytest.mark.real_weights
def test_transcribe_through_the_cli(tiny_en_wheel, tmp_path, capsys):
    from workbench.corpus.synth import synthesize

    texts = ["The old boat drifted slowly toward the rocky shore.", "My brother fixed the broken bicycle chain yesterday."]
    paths = []
    for i, text in enumerate(texts):  # espeak at 22.05 kHz: the CLI resamples to 16 kHz
        r = synthesize(text, "en-us", 50, 140)
        paths.append(tmp_path / f"s{i}.wav")
        sf.write(paths[-1], r.audio, r.sample_rate)
    assert main(["models", "transcribe", "whisper-tiny.en", str(paths[0])]) == 0
    assert capsys.readouterr().out.strip() == texts[0]
    assert main(["models", "transcribe", "whisper-tiny.en", *map(str, paths), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"path": str(p), "text": t} for p, t in zip(paths, texts)]
    assert main(["models", "transcribe", "whisper-tiny.en", str(tmp_path / "gone.flac")]) == 2
    assert "gone.flac" in capsys.readouterr().err
