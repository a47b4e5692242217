"""AuriStream adapter on the offline stand-ins (cochlear codebook + tiny GPT), and the hub path's
error handling with a monkeypatched loader (no network)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workbench.models import auristream, load
from workbench.models.auristream import AuriStreamModel, TransformersVersionError, find_blocks
from workbench.models.cochlear_tokens import (CochlearCodebook, TinyCochlearGPT, TinyGPTConfig, synthetic_corpus,
                                              train_tiny_lm)

SR = 16000


# tiny models and small tensor ops: intra-op threads only add overhead (see conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


def tone(freq: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def codebook() -> CochlearCodebook:
    return CochlearCodebook(n_codes=16, seed=0, n_init=1, max_iter=20).fit(synthetic_corpus(n_clips=4, seconds=0.5))


@pytest.fixture(scope="module")
def model() -> AuriStreamModel:
    return load("auristream-tiny?n_codes=32&n_layer=2&n_embd=32")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 4321, 200)]


# --- codebook -----------------------------------------------------------------------------------
def test_codebook_planted_tones_get_distinct_tokens():
    tones = {f: tone(f) for f in (300.0, 1200.0, 4000.0)}
    cb = CochlearCodebook(n_codes=8, seed=0, n_init=1).fit(list(tones.values()) + [np.zeros(SR // 2, np.float32)])
    dominant = {}
    for f, x in tones.items():
        ids = cb.encode(x)
        assert ids.shape == (len(x) // 80,) and ids.dtype == np.int64
        assert ids.min() >= 0 and ids.max() < 8
        steady = ids[10:-10]
        values, counts = np.unique(steady, return_counts=True)
        dominant[f] = values[counts.argmax()]
        assert counts.max() > 0.9 * len(steady)  # a steady tone is (almost) one token
    assert len(set(dominant.values())) == 3
    # null: silence carries no structure -> one token throughout, different from every tone's
    silent = cb.encode(np.zeros(SR // 4, np.float32))
    assert len(set(silent.tolist())) == 1 and silent[0] not in dominant.values()


def test_codebook_is_deterministic_and_roundtrips(tmp_path, codebook):
    corpus = synthetic_corpus(n_clips=4, seconds=0.5)
    again = CochlearCodebook(n_codes=16, seed=0, n_init=1, max_iter=20).fit(corpus)
    assert torch.equal(again.centroids_, codebook.centroids_)
    x = corpus[1]
    assert np.array_equal(codebook.encode(x), codebook.encode(x.copy()))
    codebook.save(tmp_path / "cb")
    loaded = CochlearCodebook.load(tmp_path / "cb")
    assert np.array_equal(loaded.encode(x), codebook.encode(x))
    with pytest.raises(FileNotFoundError, match="codebook.json"):
        CochlearCodebook.load(tmp_path)


def test_codebook_wavcoch_interface(codebook):
    wav = torch.tensor(np.stack(synthetic_corpus(n_clips=2, seconds=0.5)))[:, None]  # [2, 1, 8000]
    out = codebook(wav, sample_rate=16000)
    assert out.input_ids.shape == (2, 8000 // 80) and out.input_ids.dtype == torch.int64
    assert torch.equal(out.input_values, out.input_ids) and torch.equal(out["input_ids"], out.input_ids)
    assert 0 <= int(out.input_ids.min()) and int(out.input_ids.max()) < 16
    with pytest.raises(ValueError, match="16000 Hz"):
        codebook(wav, sample_rate=24000)


def test_codebook_validation():
    with pytest.raises(ValueError, match="n_codes"):
        CochlearCodebook(n_codes=9000)
    with pytest.raises(ValueError, match="cannot fit 64 codes"):
        CochlearCodebook(n_codes=64).fit([np.zeros(800, np.float32)])
    with pytest.raises(RuntimeError, match="not fitted"):
        CochlearCodebook(n_codes=4).encode(np.zeros(800, np.float32))


# --- tiny GPT conventions ------------------------------------------------------------------------
def test_tiny_gpt_follows_auristream_conventions():
    lm = TinyCochlearGPT(TinyGPTConfig(vocab_size=16, n_layer=3, n_embd=32, n_head=2, block_size=64))
    ids = torch.randint(16, (2, 20), generator=torch.Generator().manual_seed(0))
    out = lm(ids, output_hidden_states=True, return_dict=True)
    hs = out.hidden_states
    assert len(hs) == 4 and out.logits.shape == (2, 20, 16)
    assert torch.equal(hs[0], lm.wte(ids) + lm.wpe(torch.arange(20))[None])  # index 0: token + position
    assert torch.allclose(out.logits, lm.lm_head(lm.ln_f(hs[-1])))  # last entry: before the final norm
    later = ids.clone()
    later[:, 15:] = (later[:, 15:] + 1) % 16
    hs2 = lm(later, output_hidden_states=True).hidden_states
    assert torch.equal(hs2[-1][:, :15], hs[-1][:, :15]) and not torch.equal(hs2[-1], hs[-1])  # causal
    with pytest.raises(ValueError, match="block_size"):
        lm(torch.zeros(1, 65, dtype=torch.long))


def test_train_tiny_lm_learns_a_predictable_sequence(codebook):
    # planted structure: a repeating three-tone melody -> next token is predictable
    melody = np.concatenate([tone(f, 0.1) for f in (300.0, 1200.0, 4000.0)] * 8)
    lm = TinyCochlearGPT(TinyGPTConfig(vocab_size=16, n_layer=1, n_embd=32, n_head=2, block_size=128))
    losses = train_tiny_lm(lm, codebook, [melody], steps=25, seq_len=64, batch_size=4, lr=1e-2)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    assert not lm.training


# --- adapter -------------------------------------------------------------------------------------
def test_hooks_shapes_and_frame_rates(model, clips):
    assert model.hook_points == ["tokens.hook_ids", "lm.hook_embed", "lm.blocks.0.hook_resid_post",
                                 "lm.blocks.1.hook_resid_post"]
    assert all(model.frame_rate(h) == 200.0 for h in model.hook_points)
    outs = model.run_with_cache(clips, model.hook_points)
    for clip, out in zip(clips, outs):
        expected = int(np.ceil(len(clip) / 80))
        for h, act in out.items():
            assert act.dim() == 2 and abs(act.shape[0] - expected) <= 1, h
            assert act.shape[0] == len(clip) // 80
        assert out["tokens.hook_ids"].dtype == torch.int64 and out["tokens.hook_ids"].shape[1] == 1
        assert 0 <= int(out["tokens.hook_ids"].min()) and int(out["tokens.hook_ids"].max()) < 32
        assert out["lm.blocks.1.hook_resid_post"].shape[1] == 32
    # a clip's activations do not depend on what it was batched with
    alone = model.run_with_cache(clips[1], model.hook_points)
    assert all(torch.equal(alone[h], outs[1][h]) for h in model.hook_points)


@pytest.mark.parametrize("hook", ["tokens.hook_ids", "lm.hook_embed", "lm.blocks.0.hook_resid_post"])
def test_identity_and_zeroing_interventions(model, clips, hook):
    last = "lm.blocks.1.hook_resid_post"
    base = model.run_with_cache(clips[:2], model.hook_points)
    with model.hooks({hook: lambda a: a}):
        same = model.run_with_cache(clips[:2], model.hook_points)
    assert all(torch.equal(b[h], s[h]) for b, s in zip(base, same) for h in model.hook_points)
    with model.hooks({hook: lambda a: a * 0}):
        zeroed = model.run_with_cache(clips[:2], model.hook_points)
    assert float(zeroed[0][hook].abs().max()) == 0.0
    assert not torch.equal(zeroed[0][last], base[0][last])  # the edit propagates downstream


def test_long_input_runs_in_windows(codebook):
    lm = TinyCochlearGPT(TinyGPTConfig(vocab_size=16, n_layer=2, n_embd=32, n_head=2, block_size=64))
    model = AuriStreamModel(codebook, lm, max_tokens=64)
    widths = []
    handle = lm.register_forward_pre_hook(lambda _m, args: widths.append(args[0].shape[1]))
    clip = synthetic_corpus(n_clips=2, seconds=0.75, seed=3)[1]  # 150 tokens -> windows of 64, 64, 22
    try:
        acts = model.run_with_cache(clip, model.hook_points)
    finally:
        handle.remove()
    assert widths and max(widths) <= 64
    ids = model.tokenize(clip)
    assert len(ids) == 150 and torch.equal(acts["tokens.hook_ids"][:, 0], ids)
    hidden = [lm(ids[None, s : s + 64], output_hidden_states=True).hidden_states for s in (0, 64, 128)]
    for k, h in enumerate(["lm.hook_embed", "lm.blocks.0.hook_resid_post", "lm.blocks.1.hook_resid_post"]):
        expected = torch.cat([hs[k][0] for hs in hidden])
        assert acts[h].shape == (150, 32) and torch.allclose(acts[h], expected, atol=1e-5)
    seen = []
    with model.hooks({"lm.blocks.0.hook_resid_post": lambda a: seen.append(a.shape) or a}):
        model.run_with_cache(clip, model.hook_points)
    assert seen == [torch.Size([1, 192, 32])]  # interventions see the whole clip (windows merged)


class _OpaqueLM(nn.Module):
    """The same LM with its blocks outside any ModuleList, so find_blocks cannot locate them."""

    def __init__(self, lm: TinyCochlearGPT) -> None:
        super().__init__()
        self.wte, self.wpe, self.ln_f, self.lm_head = lm.wte, lm.wpe, lm.ln_f, lm.lm_head
        self.n_blocks = len(lm.blocks)
        for i, blk in enumerate(lm.blocks):
            self.add_module(f"layer_{i}", blk)

    def forward(self, ids, output_hidden_states=False, return_dict=True):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))[None]
        hs = [x]
        for i in range(self.n_blocks):
            x = getattr(self, f"layer_{i}")(x)
            hs.append(x)
        return {"logits": self.lm_head(self.ln_f(x)), "hidden_states": tuple(hs)}


def test_fallback_reads_hidden_states_when_blocks_are_unknown(codebook, clips):
    lm = TinyCochlearGPT(TinyGPTConfig(vocab_size=16, n_layer=2, n_embd=32, n_head=2))
    direct = AuriStreamModel(codebook, lm)
    opaque = _OpaqueLM(lm)
    assert find_blocks(opaque) is None
    fallback = AuriStreamModel(codebook, opaque)
    assert fallback.blocks is None and fallback.hook_points == direct.hook_points
    got = fallback.run_with_cache(clips[0], fallback.hook_points)
    want = direct.run_with_cache(clips[0], direct.hook_points)
    for h in direct.hook_points:
        assert torch.equal(got[h], want[h]), h
    with pytest.raises(NotImplementedError, match="blocks"):
        with fallback.hooks({"lm.blocks.0.hook_resid_post": lambda a: a}):
            pass
    with fallback.hooks({"tokens.hook_ids": lambda a: a * 0}):  # token edits still work
        zeroed = fallback.run_with_cache(clips[0], fallback.hook_points)
    assert not torch.equal(zeroed["lm.hook_embed"], want["lm.hook_embed"])


def test_tiny_model_saved_to_a_directory_loads_through_the_registry(tmp_path, codebook):
    lm = TinyCochlearGPT(TinyGPTConfig(vocab_size=16, n_layer=1, n_embd=32, n_head=2, block_size=256))
    lm.save(tmp_path)
    codebook.save(tmp_path)
    model = load(str(tmp_path))
    assert model.hook_points[-1] == "lm.blocks.0.hook_resid_post" and model.max_tokens == 256
    x = tone(700.0, 0.2)
    acts = model.run_with_cache(x, "lm.*")
    ids = torch.tensor(codebook.encode(x))
    assert torch.allclose(acts["lm.blocks.0.hook_resid_post"], lm(ids[None], output_hidden_states=True).hidden_states[1][0])


# --- hub path, no network ---------------------------------------------------------------------
def test_transformers5_failure_gives_a_clear_error(monkeypatch):
    def broken(name):
        raise ImportError("cannot import name 'BatchEncoding' from 'transformers.tokenization_utils'")

    monkeypatch.setattr(auristream, "_from_pretrained", broken)
    monkeypatch.setattr(auristream, "_transformers_version", lambda: "5.23.0")
    with pytest.raises(TransformersVersionError, match=r"transformers<5") as err:
        load("TuKoResearch/AuriStream1B_librilight_ckpt500k")
    assert "TuKoResearch/WavCochV8192" in str(err.value) and "5.23.0" in str(err.value)
    # on 4.x the original error is not disguised as a version problem
    monkeypatch.setattr(auristream, "_transformers_version", lambda: "4.57.1")
    with pytest.raises(ImportError, match="BatchEncoding"):
        load("TuKoResearch/AuriStream1B_librilight_ckpt500k")


def test_network_errors_stay_network_errors(monkeypatch):
    def offline(name):
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}")

    monkeypatch.setattr(auristream, "_from_pretrained", offline)
    monkeypatch.setattr(auristream, "_transformers_version", lambda: "5.0.0")
    with pytest.raises(OSError, match="couldn't connect") as err:
        load("TuKoResearch/WavCochV8192")
    assert any("transformers<5" in note for note in getattr(err.value, "__notes__", []))


def test_hub_specs_compose_tokenizer_and_lm(monkeypatch, codebook):
    requested = []
    lm = TinyCochlearGPT(TinyGPTConfig(vocab_size=16, n_layer=2, n_embd=32, n_head=2))

    def fake(name):
        requested.append(name)
        return lm if "AuriStream" in name else codebook

    monkeypatch.setattr(auristream, "_from_pretrained", fake)
    model = load("TuKoResearch/AuriStream100M_40Pred_BigAudioDataset_500k")
    assert requested == ["TuKoResearch/WavCochCausalV8192", "TuKoResearch/AuriStream100M_40Pred_BigAudioDataset_500k"]
    assert model.blocks is not None and len(model.hook_points) == 4
    requested.clear()
    load("TuKoResearch/AuriStream1B_librilight_ckpt500k?tokenizer=TuKoResearch/WavCochV8192&max_tokens=128")
    assert requested[0] == "TuKoResearch/WavCochV8192"
    tokens_only = load("TuKoResearch/WavCochCausalV8192")
    assert tokens_only.hook_points == ["tokens.hook_ids"] and tokens_only.lm is None
    ids = tokens_only.run_with_cache(tone(500.0, 0.1), ["tokens.hook_ids"])["tokens.hook_ids"]
    assert ids.shape == (20, 1)
