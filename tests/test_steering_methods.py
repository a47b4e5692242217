"""Ground truth for the causal methods: a tiny random-init Whisper with a planted encoder direction ``u``
that triggers a planted decoder output (end of text). Attribution patching finds the SAE feature that
writes ``u`` although a confounded feature has the larger contrast; the optimised vector ends the
transcripts of the concept's clips and keeps the others; shuffled labels give nothing; strength 0 and
N = 0 stay bit-identical to plain decoding for every method and gate."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sae.steer.attribution import attribution, encoder_suffix, end_logprob, hook_windows, patch_effects
from sae.steer.detector import fit_detector
from sae.steer.selection import select_by_attribution, select_features
from sae.steer.vector import optimise_vector
from workbench.features import FeatureDictionary
from workbench.models.whisper import random_whisper
from workbench.steering import Steering

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
HOOK = "encoder.blocks.1.hook_resid_post"
SR, D, EOT = 16000, 64, 90


def unit(g, *others):
    v = torch.randn(D, generator=g)
    for o in others:
        v = v - (v @ o) * o
    return v / v.norm()


@pytest.fixture(scope="module")
def world():
    """The planted model: cross-attention of the last decoder block reads ``u`` from the encoder output and
    writes the end-of-text embedding; the decoder's final bias is set so plain decoding does not end."""
    model = random_whisper(seed=0)
    model.max_new_tokens = 3
    g = torch.Generator().manual_seed(7)
    u = unit(g)
    w, e = unit(g), unit(g)
    p = unit(g, u)           # marker read by the planted feature (no pathway of its own)
    c = unit(g, u, p)        # confound (no pathway)
    dec = model.hf.model.decoder
    att = dec.layers[-1].encoder_attn
    with torch.no_grad():
        dec.embed_tokens.weight[EOT] = 2.0 * e  # the random init leaves the pad (= end) row at zero
        att.v_proj.weight += torch.outer(w, u)
        att.out_proj.weight += torch.outer(e, w)
        dec.layer_norm.weight *= 4.0  # sharper logits: plain decoding is confident, as a trained model's is
        X, _ = hook_windows(model, HOOK, [noise(1000 + i) for i in range(4)])
        bias, lo, hi = dec.layer_norm.bias.clone(), 0.0, 400.0
        for _ in range(30):  # bisection: plain decoding at log p(end) = -6, far from ending
            k = (lo + hi) / 2
            dec.layer_norm.bias.copy_(bias - k * e)
            lp = float(end_logprob(model, encoder_suffix(model, HOOK, X)).mean())
            lo, hi = (k, hi) if lp > -6.0 else (lo, k)
    return {"model": model, "u": u, "p": p, "c": c}


def noise(seed, seconds=1.0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def plant(world, concept: bool, seed: int):
    """Concept clips carry the marker ``p`` (amplitude U(0, 2) per frame) and a clean confound ``3 c``."""
    rng = np.random.default_rng(seed)
    amp = torch.tensor(rng.uniform(0, 2, 1500), dtype=torch.float32)[:, None]

    def fn(act):
        return act + amp * world["p"] + 3.0 * world["c"] if concept else act
    return fn


def acts_of(world, clips):
    """Hook activations of planted clips: ``[(act [1500, D], real frames)]``."""
    out = []
    for concept, seed in clips:
        fn = plant(world, concept, seed)
        x, n = hook_windows(world["model"], HOOK, [noise(seed)])
        out.append((fn(x[0]), n[0]))
    return out


@pytest.fixture(scope="module")
def sae(world, tmp_path_factory):
    """16 features: 0 = planted (reads ``p``, writes ``2u``), 1 = confound (reads and writes ``c``), 2.. random."""
    g = torch.Generator().manual_seed(3)
    W_dec = torch.randn(16, D, generator=g) / D**0.5
    W_enc = W_dec.T.clone()
    W_enc[:, 0], W_dec[0] = world["p"], 2.0 * world["u"]
    W_enc[:, 1], W_dec[1] = world["c"], world["c"]
    d = tmp_path_factory.mktemp("sae")
    save_file({"W_enc": W_enc.contiguous(), "b_enc": torch.full((16,), -0.5), "W_dec": W_dec.contiguous(),
               "b_dec": torch.zeros(D), "threshold": torch.full((16,), 0.05)}, str(d / "sae_weights.safetensors"))
    (d / "cfg.json").write_text(json.dumps({"d_in": D, "d_sae": 16, "hook_name": HOOK,
                                            "apply_b_dec_to_input": False}))
    return d


def edited_windows(world, clips):
    """Whole windows with the plant applied (what the decoder reads without steering)."""
    X = []
    for concept, seed in clips:
        x, _ = hook_windows(world["model"], HOOK, [noise(seed)])
        X.append(plant(world, concept, seed)(x[0]))
    return torch.stack(X)


def test_attribution_finds_the_planted_feature_where_contrast_is_confounded(world, sae):
    model = world["model"]
    fd = FeatureDictionary.load(sae)
    clips = [(i % 2 == 0, i) for i in range(12)]
    frames = acts_of(world, clips)
    codes = np.concatenate([fd.encode(a[:n]).numpy() for a, n in frames])
    y_frames = np.concatenate([[c] * n for (c, _), (_, n) in zip(clips, frames)])
    groups = np.concatenate([[s] * n for (_, s), (_, n) in zip(clips, frames)])
    contrast = select_features(codes, y_frames, groups, n_permutations=50, seed=0)
    assert contrast.selected[0] == 1  # the confound has the larger effect size

    with model.hooks({}):  # attribution on the planted windows: run through the steering hook path
        X = edited_windows(world, clips)
    A = _attribution_of_windows(model, fd, X, [n for _, n in frames])
    y = np.array([c for c, _ in clips])
    sel = select_by_attribution(A, y, np.arange(len(clips)), n_permutations=50, seed=0)
    assert sel.selected[0] == 0 and 1 not in sel.selected[:1]
    # confirmed by patching: scaling feature 0 raises log p(end) on concept clips, feature 1 does not
    probe = Steering(model="random-whisper", hook=HOOK, d_model=D, method="sae", edit="scale", strength=1.0,
                     sae=str(sae), features=[{"index": 0}, {"index": 1}])
    P = _patch_windows(model, probe, X, [0, 1], 8.0)
    assert P[y, 0].mean() > 1.0 and P[y, 1].mean() < 0.2 * P[y, 0].mean()  # the confound does not help
    # the steering ends the concept's transcripts and leaves the others
    ended = {s: _ends(model, X, probe.with_(features=[0], strength=s)) for s in (2.0, 4.0, 8.0, 16.0)}
    assert any(e[y].all() and not e[~y].any() for e in ended.values()), ended
    assert not _ends(model, X, None)[y].any()  # plain decoding does not end them
    # shuffled labels select nothing
    shuffled = np.random.default_rng(0).permutation(y)
    assert select_by_attribution(A, shuffled, np.arange(len(clips)), n_permutations=50, seed=0).selected == []


def _attribution_of_windows(model, fd, X, n):
    z0 = fd.encode(X)
    err = X - fd.decode(z0)
    z = z0.clone().requires_grad_(True)
    m = end_logprob(model, encoder_suffix(model, HOOK, z @ fd.W_dec + fd.b_dec + err))
    (grad,) = torch.autograd.grad(m.sum(), z)
    return np.stack([(grad * z0)[i, :k].sum(0).detach().numpy() for i, k in enumerate(n)])


def _patch_windows(model, probe, X, feats, s):
    with torch.no_grad():
        base = end_logprob(model, encoder_suffix(model, HOOK, X))
        return np.stack([(end_logprob(model, encoder_suffix(model, HOOK, probe.with_(features=[f], strength=s)
                                                            .edit_fn()(X))) - base).numpy() for f in feats], 1)


def _ends(model, X, steering, lengths=None):
    with torch.no_grad():
        x = steering.edit_fn(lengths)(X) if steering is not None else X
        seqs = model._generate(encoder_hidden=encoder_suffix(model, HOOK, x))
    return np.array([_ended(model, s) for s in seqs])


def _ended(model, seq):
    """Greedy decoding ended at the first step (generate returns nothing new, or end-of-text first)."""
    prompt = len(model.prompt_ids())
    return len(seq) == prompt or int(seq[prompt]) == EOT


def test_attribution_and_patching_functions_agree_with_the_window_versions(world, sae):
    """The library entry points (audio in) give the same scores as the window-level code above."""
    model = world["model"]
    fd = FeatureDictionary.load(sae)
    audio = [noise(s) for s in (1, 2)]
    X, n = hook_windows(model, HOOK, audio)
    np.testing.assert_allclose(attribution(model, fd, HOOK, audio, verbose=False), _attribution_of_windows(model, fd, X, n),
                               rtol=1e-4, atol=1e-6)
    probe = Steering(model="random-whisper", hook=HOOK, d_model=D, method="sae", edit="scale", strength=1.0,
                     sae=str(sae), features=[{"index": 0}, {"index": 2}])
    np.testing.assert_allclose(patch_effects(model, probe, audio, [0, 2], 4.0, verbose=False),
                               _patch_windows(model, probe, X, [0, 2], 4.0), rtol=1e-4, atol=1e-5)


def test_detector_gate_and_zero_strength_are_exact(world, sae):
    model = world["model"]
    clips = [(i % 2 == 0, 100 + i) for i in range(8)]
    frames = acts_of(world, clips)
    acts = np.concatenate([a[:n].numpy() for a, n in frames])
    y = np.concatenate([[c] * n for (c, _), (_, n) in zip(clips, frames)])
    X = edited_windows(world, clips)
    det = fit_detector(acts, y, level="clip")
    vec = Steering(model="random-whisper", hook=HOOK, d_model=D, method="vector", edit="add", strength=1.0,
                   direction=(0.5 * world["u"]).tolist(), gate="detector", detector=det)
    ungated = vec.with_(gate="none")
    yc = np.array([c for c, _ in clips])
    assert _ends(model, X, ungated).all()  # the vector alone ends every clip
    # gated by the detector (mean logit over each clip's 50 real frames): only the concept's clips
    assert (_ends(model, X, vec, lambda: [50] * len(X)) == yc).all()
    for st in (vec.with_(strength=0.0), ungated.with_(strength=0.0),
               Steering(model="random-whisper", hook=HOOK, d_model=D, method="sae", edit="clamp_target", strength=0.0,
                        sae=str(sae), features=[{"index": 0, "target": 1.0}]),
               Steering(model="random-whisper", hook=HOOK, d_model=D, method="sae", edit="scale", strength=8.0,
                        sae=str(sae), features=[{"index": 0}], n_features=0)):
        assert st.is_identity and st.hooks() == {}
        assert torch.equal(st.edit_fn()(X), X)


def _ends_one(model, x):
    return _ended(model, model._generate(encoder_hidden=encoder_suffix(model, HOOK, x))[0])


def test_optimised_vector_ends_the_concept_and_shuffled_labels_do_not_beat_zero(world):
    """Concept clips are quiet at the hook (activations x 0.3): the layer norm after it makes one added
    vector act more on them. Trained on the true labels the vector ends them and keeps the rest. Null:
    clips that do not differ and shuffled labels: the vector ends no more held-out clips than zero does."""
    model = world["model"]
    concept = np.arange(16) % 2 == 0
    X0, n = hook_windows(model, HOOK, [noise(200 + i) for i in range(16)])
    X = X0 * torch.tensor(np.where(concept, 0.3, 1.0), dtype=torch.float32)[:, None, None]
    tr, te = np.arange(16) < 10, np.arange(16) >= 10
    n_tr = [n[i] for i in np.flatnonzero(tr)]

    def ended(v, windows):
        st = Steering(model="random-whisper", hook=HOOK, d_model=D, method="vector", edit="add", strength=1.0,
                      direction=[float(x) for x in v])
        return _ends(model, windows, st)

    kw = dict(steps=40, lr=0.002, kl_weight=10.0, verbose=False)
    true = optimise_vector(model, HOOK, None, concept[tr], windows=(X[tr], n_tr), **kw)
    e = ended(true["vector"], X[te])
    assert e[concept[te]].all() and not e[~concept[te]].any(), (e, true["end_logprob"][-1], true["kl"][-1])
    assert not ended(np.zeros(D), X[te]).any()
    rng = np.random.default_rng(0)
    null = optimise_vector(model, HOOK, None, rng.permutation(concept[tr]), windows=(X0[tr], n_tr), **kw)
    labels = rng.permutation(concept[te])

    def selectivity(v):
        e = ended(v, X0[te])
        return e[labels].mean() - e[~labels].mean()
    assert selectivity(null["vector"]) <= selectivity(np.zeros(D)) + 1 / 3


def test_two_layer_vector_is_applied_as_trained_and_ends_the_concept(world):
    """More than one layer (``layers``): the artifact applied through the model's hooks gives the encoder
    output the training computed (vectors after blocks 0 and 1); trained jointly on quiet concept clips it
    ends them and keeps the rest; strength 0 attaches nothing; gated or SAE multi-layer edits are refused."""
    from sae.steer.vector import _suffix

    model = world["model"]
    h0 = "encoder.blocks.0.hook_resid_post"
    audio = [noise(300 + i) for i in range(16)]
    g = torch.Generator().manual_seed(5)
    v0, v1 = torch.randn(D, generator=g), torch.randn(D, generator=g)
    st = Steering(model="random-whisper", hook=HOOK, d_model=D, method="vector", edit="add", strength=0.5,
                  direction=v1.tolist(), layers=[{"hook": h0, "direction": v0.tolist()}])
    X0, n = hook_windows(model, h0, audio[:2])
    with torch.no_grad():
        with model.hooks(st.hooks()):  # (the suffix below runs the same blocks: outside the hooks)
            applied = model.hf.model.encoder(model._features(audio[:2])).last_hidden_state
        trained = _suffix(model, h0, X0, {0: 0.5 * v0, 1: 0.5 * v1})
    torch.testing.assert_close(applied.float(), trained.float(), rtol=1e-4, atol=1e-4)
    assert st.with_(strength=0.0).hooks() == {} and set(st.hooks()) == {HOOK, h0}

    concept = np.arange(16) % 2 == 0
    X0, n = hook_windows(model, h0, audio)
    X = X0 * torch.tensor(np.where(concept, 0.3, 1.0), dtype=torch.float32)[:, None, None]
    tr, te = np.arange(16) < 10, np.arange(16) >= 10
    res = optimise_vector(model, HOOK, None, concept[tr], windows=(X[tr], [n[i] for i in np.flatnonzero(tr)]),
                          steps=40, lr=0.002, kl_weight=10.0, verbose=False, extra_hooks=[h0])
    assert [x["hook"] for x in res["layers"]] == [h0]
    vs = {0: torch.tensor(res["layers"][0]["direction"]), 1: torch.tensor(res["vector"])}
    with torch.no_grad():
        e = np.array([_ended(model, s) for s in model._generate(encoder_hidden=_suffix(model, h0, X[te], vs))])
    assert e[concept[te]].all() and not e[~concept[te]].any(), e
    for bad in ({"gate": "detector", "detector": {"weight": [0.0] * D}}, {"method": "sae", "edit": "scale", "sae": "x"}):
        with pytest.raises(ValueError, match="layers"):
            Steering(**{**dict(model="m", hook=HOOK, d_model=D, method="vector", edit="add", strength=1.0,
                               direction=[0.0] * D, layers=[{"hook": h0, "direction": [0.0] * D}]), **bad})


def test_vector_at_the_encoder_output_is_applied_as_trained_and_ends_the_concept(world):
    """At ``encoder.ln_post.hook_normalized`` (the input of every cross-attention) the artifact applied through
    the model's hooks adds ``s v`` to the encoder output the training used; concept clips already carry part of
    the planted direction ``u`` there (closer to ending): the trained vector ends them and keeps the rest."""
    from sae.steer.attribution import ENCODER_OUT

    model = world["model"]
    audio = [noise(500 + i) for i in range(16)]
    g = torch.Generator().manual_seed(9)
    v = torch.randn(D, generator=g)
    st = Steering(model="random-whisper", hook=ENCODER_OUT, d_model=D, method="vector", edit="add", strength=0.5,
                  direction=v.tolist())
    X0, n = hook_windows(model, ENCODER_OUT, audio)
    with torch.no_grad(), model.hooks(st.hooks()):
        applied = model.hf.model.encoder(model._features(audio[:2])).last_hidden_state
    torch.testing.assert_close(applied.float(), (encoder_suffix(model, ENCODER_OUT, X0[:2]) + 0.5 * v).float(),
                               rtol=1e-4, atol=1e-4)
    concept = np.arange(16) % 2 == 0
    # concept clips carry 0.04 u (log p(end) -3.1 against -6 for the rest; 0.05 u would end them)
    X = X0 + torch.tensor(np.where(concept, 0.04, 0.0), dtype=torch.float32)[:, None, None] * world["u"]
    tr, te = np.arange(16) < 10, np.arange(16) >= 10

    def ended(vec):
        with torch.no_grad():
            return np.array([_ended(model, s) for s in model._generate(encoder_hidden=X[te] + torch.as_tensor(vec, dtype=X.dtype))])
    assert not ended(np.zeros(D)).any()
    res = optimise_vector(model, ENCODER_OUT, None, concept[tr], windows=(X[tr], [n[i] for i in np.flatnonzero(tr)]),
                          steps=40, lr=0.002, kl_weight=10.0, verbose=False)
    e = ended(res["vector"])
    assert e[concept[te]].all() and not e[~concept[te]].any(), (e, res["end_logprob"][-1], res["kl"][-1])
