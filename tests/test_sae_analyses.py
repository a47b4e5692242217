"""AudioSAE analyses on planted data: seed consistency, domain specialization, concept erasure,
each with a planted signal that must be found and a null that must not."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sae import BatchTopKSAE, SAEConfig, TrainConfig, train
from sae.analyses import concept_erasure, domain_specialization, seed_consistency
from sae.synthetic import planted_dictionary

DOMAINS = np.array(["speech", "music", "environment"], dtype=object)


@pytest.fixture(scope="module")
def planted():
    """128 shared atoms (4 per frame), one atom in half the "music" frames only, a concept atom in 20%."""
    n, d = 36_000, 32
    base = planted_dictionary(n=n, d=d, n_atoms=130, active=4, noise=0.01, seed=7)
    rng = np.random.default_rng(7)
    domains = DOMAINS[rng.integers(0, 3, n)]
    music_atom, concept_atom = base.atoms[128], base.atoms[129]
    # keep the two special atoms out of the random draws, then plant them
    special = (base.active >= 128)[:, :, None]
    X = base.X - (base.coef[:, :, None] * base.atoms[base.active] * special).sum(1)
    music = (domains == "music") & (rng.random(n) < 0.5)
    concept = rng.random(n) < 0.2
    for atom, on in ((music_atom, music), (concept_atom, concept)):
        X = X + torch.from_numpy((1.5 + rng.random(n)) * on).float()[:, None] * atom
    cfg = TrainConfig(expansion=8, k=5, tokens=400_000, batch_size=1024, lr=1e-2, warmup_steps=20,
                      threshold_start_step=40, threshold_beta=0.98, dead_after_tokens=20_000, threads=1)
    saes = [train({"h": X[:28_000]}, cfg=cfg, seed=s, verbose=False)["h"] for s in (0, 1)]
    return {"X": X, "held": X[28_000:], "domains": domains[28_000:], "concept": concept[28_000:],
            "music_atom": music_atom, "concept_atom": concept_atom, "saes": saes}


def _best_feature(sae, atom):
    return int((torch.nn.functional.normalize(sae.W_dec.detach(), dim=1) @ atom).argmax())


@pytest.mark.slow
def test_seed_consistency_high_for_same_data_low_for_unrelated(planted):
    a, b = planted["saes"]
    same = seed_consistency(a, b, planted["held"])
    assert same["fraction_consistent"] > 0.5 and same["mean_best_cosine"] > 0.8, same["fraction_consistent"]
    r1 = BatchTopKSAE(SAEConfig(d_in=32, expansion=8, k=5), torch.Generator().manual_seed(11))
    r2 = BatchTopKSAE(SAEConfig(d_in=32, expansion=8, k=5), torch.Generator().manual_seed(12))
    unrelated = seed_consistency(r1, r2, planted["held"])
    assert unrelated["fraction_consistent"] < 0.1, unrelated["fraction_consistent"]


@pytest.mark.slow
def test_domain_specialization_finds_planted_music_feature(planted):
    sae = planted["saes"][0]
    held, dom = planted["held"], planted["domains"]
    res = domain_specialization(sae, held, dom)
    f = _best_feature(sae, planted["music_atom"])
    row = res["table"].iloc[f]
    assert row["specialized"] and row["top_domain"] == "music" and row["share_music"] > 0.8
    assert res["specialized_per_domain"]["music"] >= 1
    # the shared atoms are not specialised to any domain
    assert res["specialized_per_domain"]["speech"] + res["specialized_per_domain"]["environment"] <= 2
    # null: domain labels unrelated to the data -> nothing is specialised
    shuffled = np.random.default_rng(0).permutation(dom)
    null = domain_specialization(sae, held, shuffled)
    assert sum(null["specialized_per_domain"].values()) == 0


@pytest.mark.slow
def test_concept_erasure_planted_concept_needs_few_features_null_needs_none(planted):
    sae = planted["saes"][0]
    held, y = planted["held"], planted["concept"]
    res = concept_erasure(sae, held, y)
    assert res["baseline_accuracy"] > 0.85
    assert 1 <= res["features_needed"] <= 5 and res["fraction_needed"] < 0.05, res["features_needed"]
    assert _best_feature(sae, planted["concept_atom"]) in res["top_features"][: res["features_needed"]]
    null = concept_erasure(sae, held, np.random.default_rng(1).random(len(y)) < 0.5)
    assert null["baseline_at_chance"] and null["features_needed"] == 0


def test_concept_erasure_rejects_non_binary_concept():
    sae = BatchTopKSAE(SAEConfig(d_in=8, expansion=2, k=2))
    with pytest.raises(ValueError, match="binary"):
        concept_erasure(sae, torch.randn(20, 8), np.zeros(20))
