"""workbench.steering: the edits' math, the artifact format and its errors, and that edits act inside generation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from workbench.features import FeatureDictionary
from workbench.models.whisper import random_whisper
from workbench.steering import STEERING_FILE, Steering

D, M = 16, 48


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    """A random JumpReLU SAE: its reconstruction is far from exact."""
    d = tmp_path_factory.mktemp("sae")
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D, M, generator=g) / D**0.5
    save_file({"W_enc": W, "b_enc": torch.zeros(M), "W_dec": W.T.contiguous(), "b_dec": torch.randn(D, generator=g),
               "threshold": torch.full((M,), 0.05)}, str(d / "sae_weights.safetensors"))
    (d / "cfg.json").write_text(json.dumps({"d_in": D, "d_sae": M, "hook_name": "encoder.blocks.0.hook_resid_post"}))
    return d


def sae_steering(sae_dir, features=(3, 5, 7), **kw) -> Steering:
    kw = {"edit": "scale", "strength": 1.0, **kw}
    return Steering(model="random-whisper", hook="encoder.blocks.0.hook_resid_post", d_model=D, method="sae",
                    features=[{"index": i, "effect_size": 1.0} for i in features], sae=str(sae_dir), **kw)


def test_zero_change_in_sae_space_is_the_identity_despite_reconstruction_error(sae_dir):
    x = torch.randn(2, 30, D)
    fd = FeatureDictionary.load(sae_dir)
    assert (fd.decode(fd.encode(x)) - x).norm() / x.norm() > 0.3  # the SAE is a poor reconstruction
    for st in (sae_steering(sae_dir, edit="scale", strength=1.0), sae_steering(sae_dir, edit="ablate", strength=0.0)):
        assert torch.equal(st.edit_fn()(x), x)


def test_sae_edits_change_only_the_chosen_features(sae_dir):
    fd = FeatureDictionary.load(sae_dir)
    x = torch.randn(200, D)
    z = fd.encode(x)
    chosen = [3, 5, 7]
    for edit, s, expect in (("scale", 3.0, 3 * z[:, chosen]), ("ablate", 1.0, 0 * z[:, chosen]),
                            ("negate", 2.0, -2 * z[:, chosen]), ("clamp", 0.7, torch.full((200, 3), 0.7))):
        out = sae_steering(sae_dir, features=chosen, edit=edit, strength=s).edit_fn()(x)
        delta = ((expect - z[:, chosen]) @ fd.W_dec[chosen])
        torch.testing.assert_close(out - x, delta, rtol=1e-4, atol=1e-5)
    assert not torch.equal(sae_steering(sae_dir, edit="scale", strength=3.0).edit_fn()(x), x)
    # the frame gate leaves frames where no chosen feature fires untouched
    gated = sae_steering(sae_dir, edit="clamp", strength=2.0, gate="frame").edit_fn()(x)
    quiet = (z[:, chosen] == 0).all(1)
    assert quiet.any() and torch.equal(gated[quiet], x[quiet]) and not torch.equal(gated[~quiet], x[~quiet])


def test_direction_edits():
    u = [2.0, 0.0, 0.0]
    x = torch.tensor([[3.0, 1.0, -1.0], [-0.5, 2.0, 0.0]])
    proj = Steering(model="m", hook="h", d_model=3, method="direction", edit="project", strength=1.0, direction=u)
    torch.testing.assert_close(proj.edit_fn()(x), torch.tensor([[0.0, 1.0, -1.0], [0.0, 2.0, 0.0]]))
    sub = proj.with_(edit="subtract", strength=-1.0)
    torch.testing.assert_close(sub.edit_fn()(x), x + torch.tensor(u))
    gated = Steering(model="m", hook="h", d_model=3, method="direction", edit="subtract", strength=1.0,
                     direction=u, midpoint=1.0, gate="frame")
    torch.testing.assert_close(gated.edit_fn()(x), torch.tensor([[1.0, 1.0, -1.0], [-0.5, 2.0, 0.0]]))
    assert proj.with_(strength=0.0).is_identity and proj.with_(strength=0.0).hooks() == {}


def test_round_trip_and_overrides(sae_dir, tmp_path):
    st = sae_steering(sae_dir, features=(9, 4, 1, 30), edit="scale", strength=4.0, concept="nonspeech")
    st.save(tmp_path / "st")
    back = Steering.load(tmp_path / "st")
    assert back.to_dict() == st.to_dict() and back.chosen == [9, 4, 1, 30] and back.path == str(tmp_path / "st")
    two = back.with_(n_features=2, strength=8.0)
    assert two.chosen == [9, 4] and two.strength == 8.0 and back.chosen == [9, 4, 1, 30]
    live = back.with_(features=[30, 2])
    assert live.chosen == [30, 2] and live.features[0]["effect_size"] == 1.0 and "effect_size" not in live.features[1]
    assert back.with_(n_features=0).is_identity
    with pytest.raises(ValueError, match="n_features=9"):
        back.with_(n_features=9)
    with pytest.raises(ValueError, match="not an SAE edit"):
        back.with_(edit="project")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=STEERING_FILE):
        Steering.load(tmp_path)
    (tmp_path / STEERING_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"{STEERING_FILE}.*not valid JSON"):
        Steering.load(tmp_path)
    (tmp_path / STEERING_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="expected format"):
        Steering.load(tmp_path)
    (tmp_path / STEERING_FILE).write_text(json.dumps({"format": "workbench.steering/1", "model": "m", "hook": "h",
                                                      "d_model": 3, "method": "direction", "edit": "project",
                                                      "strength": 1, "direction": [1.0]}))
    with pytest.raises(ValueError, match=f"{STEERING_FILE}.*d_model=3"):
        Steering.load(tmp_path)


def test_refuses_another_model_and_acts_inside_generation():
    model = random_whisper(seed=0)
    hook = "encoder.blocks.1.hook_resid_post"
    wrong_width = Steering(model="random-whisper", hook=hook, d_model=384, method="direction", edit="project",
                           strength=1.0, direction=[1.0] * 384)
    with pytest.raises(ValueError, match="width 384"):
        with wrong_width.applied(model):
            pass
    other = Steering(model="whisper-tiny.en", hook=hook, d_model=64, method="direction", edit="project",
                     strength=1.0, direction=[1.0] * 64)
    with pytest.raises(ValueError, match="whisper-tiny.en"):
        other.check_model(model)
    no_hook = Steering(model="random-whisper", hook="encoder.blocks.7.hook_resid_post", d_model=64,
                       method="direction", edit="project", strength=1.0, direction=[1.0] * 64)
    with pytest.raises(ValueError, match="blocks.7"):
        no_hook.check_model(model)

    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    plain = model.generate_ids(audio, max_new_tokens=6)[0]
    u = np.random.default_rng(1).normal(size=64)
    calls = []
    st = Steering(model="random-whisper", hook=hook, d_model=64, method="direction", edit="subtract",
                  strength=-50.0, direction=u.tolist())
    fn = st.edit_fn()
    with model.hooks({hook: lambda a: (calls.append(a.shape), fn(a))[1]}):
        steered = model.generate_ids(audio, max_new_tokens=6)[0]
    assert calls == [(1, 1500, 64)]  # encoder hook: once per window, the decoder then reads the edit
    assert not torch.equal(plain, steered)
    with st.with_(strength=0.0).applied(model):
        assert torch.equal(model.generate_ids(audio, max_new_tokens=6)[0], plain)
