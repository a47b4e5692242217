"""SAE formats: SAELens, dictionary_learning and AudioSAE layouts round-trip; size mismatches fail clearly."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from sae import BatchTopKSAE, SAEConfig, load_sae, save_sae
from sae.io import detect_format


@pytest.fixture()
def sae():
    s = BatchTopKSAE(SAEConfig(d_in=12, expansion=4, k=3, hook_name="encoder.blocks.1.hook_resid_post",
                               model_name="whisper-tiny.en"), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        s.b_enc.normal_(0, 0.3)
        s.b_dec.normal_(0, 0.3)
        s.threshold.fill_(0.25)
    return s


@pytest.mark.parametrize("fmt", ["saelens", "dictionary_learning", "audiosae"])
def test_round_trip_gives_identical_outputs(sae, tmp_path, fmt):
    path = save_sae(sae, tmp_path / fmt, format=fmt)
    assert detect_format(path) == fmt
    back = load_sae(path)
    x = torch.randn(40, 12)
    for mode in ("threshold", "topk", "batch_topk"):
        assert torch.equal(back.encode(x, mode), sae.encode(x, mode)), mode
    assert torch.equal(back(x), sae(x))
    assert back.k == 3 and back.d_sae == 48 and float(back.threshold) == pytest.approx(0.25)
    if fmt != "audiosae":  # AudioSAE's ae.pt carries no hook name
        assert back.cfg.hook_name == "encoder.blocks.1.hook_resid_post"


def test_saelens_layout_is_what_saelens_reads(sae, tmp_path):
    save_sae(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert cfg["architecture"] == "jumprelu" and cfg["d_in"] == 12 and cfg["d_sae"] == 48
    assert cfg["metadata"]["hook_name"] == "encoder.blocks.1.hook_resid_post"
    assert w["W_enc"].shape == (12, 48) and w["W_dec"].shape == (48, 12) and w["threshold"].shape == (48,)
    # SAELens' JumpReLU inference, written out by hand from the saved tensors
    x = torch.randn(7, 12)
    hidden = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    feats = torch.relu(hidden) * (hidden > w["threshold"])
    assert torch.allclose(feats @ w["W_dec"] + w["b_dec"], sae(x), atol=1e-6)


def test_audiosae_checkpoint_without_threshold_and_wrapped(sae, tmp_path):
    state = {"encoder.weight": sae.W_enc.detach(), "encoder.bias": sae.b_enc.detach(),
             "decoder.weight": sae.W_dec.detach().T.contiguous(), "b_dec": sae.b_dec.detach(), "k": torch.tensor(3)}
    torch.save({"state_dict": state}, tmp_path / "ae.pt")
    back = load_sae(tmp_path)
    assert float(back.threshold) < 0 and back.default_mode() == "topk"  # per-frame top-k without a threshold
    x = torch.randn(5, 12)
    assert torch.equal(back.encode(x), sae.encode(x, "topk"))
    with pytest.raises(ValueError, match="no learned threshold"):
        back.encode(x, "threshold")


def test_d_in_mismatch_names_both_sizes(sae, tmp_path):
    save_sae(sae, tmp_path / "s")
    with pytest.raises(ValueError, match=r"d_in=12.*encoder\.blocks\.2\.hook_mlp_out.*d_model=384"):
        load_sae(tmp_path / "s", d_in=384, hook="encoder.blocks.2.hook_mlp_out")
    assert load_sae(tmp_path / "s", d_in=12).d_in == 12


def test_missing_or_broken_files_fail_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SAE"):
        load_sae(tmp_path / "nothing")
    (tmp_path / "ae.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="ae.pt"):
        load_sae(tmp_path)


def test_interoperates_with_dictionary_learning_when_installed(sae, tmp_path, monkeypatch):
    """Optional: PyPI dictionary-learning==0.1.0 (its __init__ imports nnsight, which its SAE does not need)."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("dictionary_learning") is None:
        pytest.skip("dictionary-learning is not installed")
    if importlib.util.find_spec("nnsight") is None:
        stub = types.ModuleType("nnsight")
        stub.LanguageModel = object
        monkeypatch.setitem(sys.modules, "nnsight", stub)
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE as DLBatchTopKSAE

    save_sae(sae, tmp_path / "dl", format="dictionary_learning")
    theirs = DLBatchTopKSAE.from_pretrained(tmp_path / "dl" / "ae.pt")
    x = torch.randn(30, 12)
    assert torch.allclose(theirs(x), sae(x), atol=1e-6)  # their threshold inference == ours
    other = DLBatchTopKSAE(12, 40, 5)
    torch.save(other.state_dict(), tmp_path / "theirs.pt")
    ours = load_sae(tmp_path / "theirs.pt")
    assert torch.allclose(ours.encode(x, "batch_topk"), other.encode(x, use_threshold=False), atol=1e-6)


# --- defect 7: one reader (workbench.features), faithful formats --------------------------------------------
def _saelens_files(tmp_path, sae, cfg_extra: dict, drop_k: bool = False):
    from safetensors.torch import save_file

    W = {"W_enc": sae.W_enc.detach().T.contiguous(), "b_enc": sae.b_enc.detach().clone(),
         "W_dec": sae.W_dec.detach().clone(), "b_dec": sae.b_dec.detach().clone(), "threshold": torch.full((48,), 0.25)}
    save_file(W, str(tmp_path / "sae_weights.safetensors"))
    cfg = {"d_in": 12, "d_sae": 48, "hook_name": "h", **({} if drop_k else {"k": 3}), **cfg_extra}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    return tmp_path


def test_saelens_reader_honours_apply_b_dec_to_input(sae, tmp_path):
    from workbench.features import FeatureDictionary

    d = _saelens_files(tmp_path, sae, {"apply_b_dec_to_input": False})
    fd, ours = FeatureDictionary.load(d), load_sae(d)
    x = torch.randn(64, 12)
    assert torch.allclose(ours.encode(x, "threshold"), fd.encode(x), atol=1e-5)
    assert torch.allclose(ours(x, "threshold"), fd.decode(fd.encode(x)), atol=1e-5)
    assert not torch.allclose(sae.encode(x, "threshold"), fd.encode(x), atol=1e-3)  # the flag matters here


def test_missing_k_is_refused_not_defaulted(sae, tmp_path):
    (tmp_path / "a").mkdir()
    d = _saelens_files(tmp_path / "a", sae, {}, drop_k=True)
    with pytest.raises(ValueError, match="no k"):
        load_sae(d)
    state = {"encoder.weight": sae.W_enc.detach(), "encoder.bias": sae.b_enc.detach(),
             "decoder.weight": sae.W_dec.detach().T.contiguous(), "b_dec": sae.b_dec.detach()}
    (tmp_path / "b").mkdir()
    torch.save(state, tmp_path / "b" / "ae.pt")
    with pytest.raises(ValueError, match="no k"):
        load_sae(tmp_path / "b")


def test_save_sae_without_a_threshold(tmp_path):
    """An SAE whose threshold was never learned: dictionary_learning would read -1 as a dense ReLU."""
    from workbench.features import FeatureDictionary

    fresh = BatchTopKSAE(SAEConfig(d_in=12, expansion=4, k=3, hook_name="h"), generator=torch.Generator().manual_seed(1))
    assert float(fresh.threshold) < 0
    with pytest.raises(ValueError, match="no learned threshold"):
        save_sae(fresh, tmp_path / "dl", format="dictionary_learning")
    assert not (tmp_path / "dl" / "ae.pt").exists()
    x = torch.randn(20, 12)
    for fmt in ("saelens", "audiosae"):
        back = load_sae(save_sae(fresh, tmp_path / fmt, format=fmt))
        assert float(back.threshold) < 0 and torch.equal(back.encode(x), fresh.encode(x, "topk")), fmt
    fd = FeatureDictionary.load(tmp_path / "saelens")
    assert fd.threshold is None and torch.allclose(fd.encode(x), fresh.encode(x, "topk"), atol=1e-6)
