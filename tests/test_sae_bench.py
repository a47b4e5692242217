"""The SAE bench on a planted dictionary whose atoms fire on known labels (planted recovery) and on
shuffled labels / an unabsorbed dictionary (null). No training: the dictionary is the ground truth,
encoded exactly (encoder = pseudo-inverse of the decoder)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sae.bench.absorption import absorption
from sae.bench.erasure import targeted_erasure
from sae.bench.explain import NO_RULE, explain_features, split_by_group
from sae.bench.labels import frame_concepts
from sae.bench.probing import sparse_probe_task
from sae.bench.saes import BenchSAE
from workbench.features import FeatureDictionary

PHONES = ["A", "B", "C", "D", "X1", "X2", "X3", "X4"] + [f"R{i}" for i in range(6)]
P = np.array([0.15, 0.1, 0.1, 0.2, 0.103, 0.103, 0.104, 0.104] + [0.006] * 6)
N, D, M = 6000, 64, 24
ABSORBERS = list(range(5, 11))  # feature 5 + i fires instead of the general feature 4 on phone R<i>


def _world(absorbed: bool = True, seed: int = 0):
    """Frames of 40 clips (8 speakers; the last 8 clips are music), the planted dictionary and codes.

    Features: 0 = phone A, 1 = phone B or C, 2 = speaker s2, 3 = music, 4 = class G = {D, R0..R5}
    (absorbed: on R<i> frames feature 5+i fires instead, its direction the general one plus its own),
    11..23 = noise (random 10% of frames)."""
    rng = np.random.default_rng(seed)
    clip = np.repeat(np.arange(40), N // 40)
    speaker = np.array([f"s{c % 8}" if c < 32 else None for c in clip], dtype=object)
    domain = np.where(clip < 32, "speech", "music")
    phones = np.array(rng.choice(PHONES, size=N, p=P / P.sum()), dtype=object)
    phones[domain == "music"] = None
    Q = np.linalg.qr(rng.standard_normal((D, D)))[0].T        # orthonormal rows
    W_dec = np.zeros((M, D))
    W_dec[:5] = Q[:5]
    for i in range(6):
        W_dec[5 + i] = (Q[4] + Q[30 + i]) / np.sqrt(2) if absorbed else Q[30 + i]
    W_dec[11:] = Q[11:24]
    code = np.zeros((N, M))
    def c(n):
        return rng.uniform(1.0, 2.0, n)
    for f, mask in ((0, phones == "A"), (1, np.isin(phones, ["B", "C"])), (2, speaker == "s2"), (3, domain == "music")):
        code[mask, f] = c(mask.sum())
    g_general = phones == "D" if absorbed else np.isin(phones, ["D"] + [f"R{i}" for i in range(6)])
    code[g_general, 4] = c(g_general.sum())
    for i in range(6):
        r = phones == f"R{i}"
        code[r, 5 + i] = c(r.sum())
    noise = rng.random((N, M - 11)) < 0.1
    code[:, 11:] = np.where(noise, rng.uniform(1.0, 2.0, noise.shape), 0.0)
    X = code @ W_dec + 0.01 * rng.standard_normal((N, D))
    W_enc = np.linalg.pinv(W_dec)                                # [D, M]: exact codes
    fd = FeatureDictionary(torch.tensor(W_enc, dtype=torch.float32), torch.zeros(M), torch.tensor(W_dec, dtype=torch.float32),
                           torch.zeros(D), torch.full((M,), 0.3), {"hook_name": "h"}, "planted")
    frames = pd.DataFrame({"clip_id": [f"c{k}" for k in clip], "phones": phones, "speaker": speaker, "domain": domain})
    return BenchSAE(fd, "planted"), torch.tensor(X, dtype=torch.float32), frames


@pytest.fixture(scope="module")
def world():
    return _world()


def test_explanations_recover_planted_labels(world):
    sae, X, frames = world
    Z = sae.encode_numpy(X.numpy())
    fit = split_by_group(frames["clip_id"], 0.5, seed=0)
    table = explain_features(Z, frame_concepts(frames), fit)
    assert list(table.columns[:5]) == ["feature", "explanation", "precision", "recall", "f1"]
    expl = dict(zip(table.feature, table.explanation))
    assert expl[0] == "phone A"
    assert expl[1] in ("phone B or C", "phone C or B")
    assert expl[2] == "speaker s2"
    assert expl[3] == "music"
    assert (table.loc[:3, "f1"] > 0.95).all(), table.loc[:3]
    noise = table[table.feature >= 11]
    assert noise["explanation"].str.startswith(NO_RULE).mean() >= 0.9, noise[["explanation", "z"]]


def test_explanations_null_shuffled_labels(world):
    sae, X, frames = world
    rng = np.random.default_rng(1)
    shuffled = frames.copy()
    for col in ("phones", "speaker", "domain"):
        shuffled[col] = rng.permutation(shuffled[col].to_numpy())
    Z = sae.encode_numpy(X.numpy())
    table = explain_features(Z, frame_concepts(shuffled), split_by_group(shuffled["clip_id"], 0.5, seed=0))
    assert table["above_chance"].sum() <= 1, table[table.above_chance]
    assert table["explanation"].str.startswith(NO_RULE).mean() >= 0.95


def _speaker_split(frames):
    g = frames["speaker"].fillna("clip:" + frames["clip_id"]).to_numpy()
    return split_by_group(g, 0.7, seed=0)


def test_sparse_probing_k1_finds_the_planted_atom(world):
    sae, X, frames = world
    Z = sae.encode_numpy(X.numpy())
    y = (frames["phones"] == "A").to_numpy().astype(int)
    res = sparse_probe_task(Z, X.numpy(), y, _speaker_split(frames), ks=(1,), dense=False)
    assert res["features"][1] == [0]
    assert res["sae"][1] > 0.97
    assert res["raw"][1] < res["sae"][1]  # one raw dimension does not hold the atom


def test_absorption_planted_and_null(world):
    sae, X, frames = world
    general = frames["phones"].isin(["D"] + [f"R{i}" for i in range(6)]).to_numpy().astype(int)
    train = _speaker_split(frames)
    res = absorption(sae, X.numpy(), general, train)
    assert res["main_features"] == [4]
    share = np.isin(frames["phones"], [f"R{i}" for i in range(6)]).sum() / general.sum()   # ~0.15
    assert abs(res["absorption_rate"] - share) < 0.06, (res["absorption_rate"], share)
    assert {a["feature"] for a in res["absorbing_features"]} <= set(ABSORBERS)
    # null 1: the same concept without absorption (the general feature fires on every member)
    sae0, X0, _ = _world(absorbed=False)
    assert absorption(sae0, X0.numpy(), general, train)["absorption_rate"] < 0.02
    # null 2: shuffled labels: nothing to read, nothing absorbed
    shuffled = np.random.default_rng(2).permutation(general)
    assert absorption(sae, X.numpy(), shuffled, train)["absorption_rate"] < 0.02


def test_targeted_erasure_removes_only_its_concept(world):
    sae, X, frames = world
    concepts = {"A": ((frames["phones"] == "A").to_numpy().astype(int), None),
                "music": ((frames["domain"] == "music").to_numpy().astype(int), None)}
    res = targeted_erasure(sae, X, concepts, _speaker_split(frames), n_remove=1)
    assert res["features"] == {"A": [0], "music": [3]}
    assert res["drop"]["A"]["A"] > 0.3 and res["drop"]["music"]["music"] > 0.3
    assert abs(res["drop"]["A"]["music"]) < 0.05 and abs(res["drop"]["music"]["A"]) < 0.05
    assert res["tpp"] > 0.3


def test_context_and_position_tiers():
    from sae.bench.labels import neighbour_labels

    frames = pd.DataFrame({"clip_id": ["a"] * 4 + ["b"] * 2, "phones": ["S", "S", "AA", "T", "M", "IY"],
                           "phones_seg": [0, 0, 1, 2, 0, 1], "start_s": [0, 0.02, 0.04, 2.5, 0, 31.0],
                           "end_s": [0.02, 0.04, 0.06, 2.52, 0.02, 31.02]})
    assert neighbour_labels(frames, shift=-1).tolist() == [None, None, "S", "AA", None, "M"]
    assert neighbour_labels(frames, shift=1).tolist() == ["AA", "AA", "T", None, "IY", None]
    c = frame_concepts(frames, min_count=1)
    pos = c.lab[c.tiers.index("position")]
    assert [c.names[i] for i in pos] == ["position <0.1 s"] * 3 + ["position 2-4 s", "position <0.1 s", "position 1-2 s"]


def _segmented_world(seed: int = 0):
    """60 clips of 40 phone segments (2-4 frames each) over 4 vowels and 6 consonants. Planted codes:
    feature 0 fires on every vowel frame, feature 1 on frames of S followed by T (S elsewhere: no),
    features 2-9 on random 8% of frames (noise)."""
    rng = np.random.default_rng(seed)
    inventory = ["AA", "IY", "UW", "EH", "S", "T", "K", "M", "N", "L"]
    rows = []
    for clip in range(60):
        seq = rng.choice(inventory, size=40)
        for seg, ph in enumerate(seq):
            rows += [(f"c{clip}", ph, seg)] * int(rng.integers(2, 5))
    frames = pd.DataFrame(rows, columns=["clip_id", "phones", "phones_seg"])
    from sae.bench.labels import neighbour_labels

    nxt = neighbour_labels(frames, shift=1)
    Z = np.zeros((len(frames), 10), np.float32)
    Z[:, 0] = np.isin(frames["phones"], ["AA", "IY", "UW", "EH"])
    Z[:, 1] = (frames["phones"].to_numpy() == "S") & (nxt == "T")
    Z[:, 2:] = rng.random((len(frames), 8)) < 0.08
    return frames, Z


def test_phone_class_and_phone_pair_rules_planted_and_null():
    frames, Z = _segmented_world()
    fit = split_by_group(frames["clip_id"], 0.5, seed=0)
    table = explain_features(Z, frame_concepts(frames), fit)
    assert table.loc[0, "explanation"] == "vowel" and table.loc[0, "f1"] > 0.99, table.loc[0]
    assert table.loc[1, "explanation"] == "phone S before T" and table.loc[1, "f1"] > 0.99, table.loc[1]
    assert not table.loc[2:, "above_chance"].any(), table[2:]
    # null: the phone sequence shuffled between clips' frames -> the planted codes match no rule
    rng = np.random.default_rng(3)
    shuffled = frames.copy()
    perm = rng.permutation(len(frames))
    shuffled[["phones", "phones_seg"]] = frames[["phones", "phones_seg"]].to_numpy()[perm]
    shuffled["clip_id"] = frames["clip_id"].to_numpy()[perm]
    shuffled = shuffled.reset_index(drop=True)
    null = explain_features(Z, frame_concepts(shuffled), split_by_group(shuffled["clip_id"], 0.5, seed=0))
    assert null["above_chance"].sum() <= 1, null[null.above_chance]
