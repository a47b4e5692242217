"""Held-out evaluation: the split (by speaker / clip, per domain), its record (holdout.json), training
that never sees held-out frames, and `sae eval` figures on held-out clips per domain with a layer table."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sae import holdout
from workbench.cli import main
from workbench.corpus.types import Clip, Corpus

pytestmark = pytest.mark.usefixtures("one_thread")
HOOKS = ["encoder.blocks.0.hook_resid_post", "encoder.blocks.1.hook_resid_post"]


def _table(n_speakers=6, clips_each=4, n_music=5):
    rows = [{"clip_id": f"s{s}_{i}", "domain": "speech", "speaker": f"spk{s}"}
            for s in range(n_speakers) for i in range(clips_each)]
    rows += [{"clip_id": f"m{i}", "domain": "music", "speaker": None} for i in range(n_music)]
    return pd.DataFrame(rows)


def test_split_by_speaker_keeps_speakers_on_one_side_and_every_domain_held_out():
    clips = _table()
    split = holdout.split_clips(clips, fraction=0.25, by="speaker", seed=0)
    held, train = set(split["heldout_clips"]), set(split["train_clips"])
    assert held | train == set(clips["clip_id"]) and not held & train
    spk = clips.set_index("clip_id")["speaker"]
    named = lambda ids: {spk[c] for c in ids if isinstance(spk[c], str)}  # noqa: E731
    assert named(held) and not named(held) & named(train)
    for dom in ("speech", "music"):
        ids = set(clips.loc[clips["domain"] == dom, "clip_id"])
        assert ids & held and ids & train, dom
    assert 0.1 <= len(held) / len(clips) <= 0.4
    assert holdout.split_clips(clips, 0.25, "speaker", seed=0) == split  # deterministic
    assert any(holdout.split_clips(clips, 0.25, "speaker", seed=s)["heldout_clips"] != split["heldout_clips"]
               for s in range(1, 6))


def test_split_by_clip_and_bad_arguments(tmp_path):
    clips = _table(n_speakers=1, clips_each=20, n_music=1)  # one speaker: only a by-clip split holds speech out
    assert not {c for c in holdout.split_clips(clips, 0.3, "speaker")["heldout_clips"] if c.startswith("s")}
    by_clip = holdout.split_clips(clips, 0.3, "clip", seed=1)
    speech_held = [c for c in by_clip["heldout_clips"] if c.startswith("s")]
    assert 4 <= len(speech_held) <= 8
    assert "m0" in by_clip["train_clips"]  # a domain with one clip cannot be split: it stays in training
    with pytest.raises(ValueError, match="fraction"):
        holdout.split_clips(clips, 1.5)
    with pytest.raises(ValueError, match="by"):
        holdout.split_clips(clips, 0.2, by="frame")
    (tmp_path / "ids.txt").write_text("# held out\na\nb\n")
    assert holdout.read_clip_list(tmp_path / "ids.txt") == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        holdout.read_clip_list(tmp_path / "nope.txt")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """12 clips of a tiny random Whisper: 8 "speech" tones (4 speakers), 4 noise "music" clips."""
    from workbench.cache import build_cache
    from workbench.models.whisper import random_whisper

    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 16000
    clips = []
    for i in range(12):
        if i < 8:
            audio, dom, spk = 0.3 * np.sin(2 * np.pi * (150 + 30 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)), \
                "speech", f"spk{i // 2}"
        else:
            audio, dom, spk = 0.2 * rng.standard_normal(len(t)), "music", None
        sf.write(root / "audio" / f"c{i}.wav", audio.astype(np.float32), 16000)
        clips.append(Clip(f"c{i}", f"audio/c{i}.wav", domain=dom, speaker=spk, duration_s=1.5))
    return build_cache(random_whisper(seed=0), Corpus(clips, root=root), "encoder.blocks.*.hook_resid_post",
                       root / "cache", verbose=False)


def _train(cache, out, *extra):
    rc = main(["sae", "train", "--cache", str(cache.root), *sum((["--hook", h] for h in HOOKS), []),
               "--expansion", "4", "--k", "8", "--tokens", "30000", "--batch-size", "256", "--out", str(out),
               "--threads", "1", "--quiet", *extra])
    assert rc == 0


def test_train_records_split_and_eval_scores_only_heldout_clips(cache, tmp_path):
    out = tmp_path / "saes"
    _train(cache, out, "--holdout-clips", "0.25", "--holdout-by", "speaker")
    split = json.loads((out / "holdout.json").read_text())
    held = split["heldout_clips"]
    assert held and set(held) | set(split["train_clips"]) == set(cache.clip_ids)
    assert {c for c in held if int(c[1:]) >= 8} and {c for c in held if int(c[1:]) < 8}  # both domains
    # the training source never yields a held-out frame
    from sae.config import TrainConfig

    src = holdout.source_without_heldout(cache, HOOKS, TrainConfig(batch_size=256), split)
    assert set(cache.frames(HOOKS[0]).iloc[src.rows]["clip_id"]) == set(split["train_clips"])

    rc = main(["sae", "eval", "--sae", str(out), "--cache", str(cache.root), "--out", str(tmp_path / "ev"), "--quiet"])
    assert rc == 0
    frames = cache.frames(HOOKS[0])
    n_held = int(frames["clip_id"].isin(held).sum())
    for h in HOOKS:
        rep = json.loads((tmp_path / "ev" / h / "eval.json").read_text())
        assert rep["in_sample"] is False and rep["holdout"]["clips"] == len(held)
        assert rep["metrics"]["frames"] == n_held
        by = rep["metrics_by_domain"]
        assert set(by) == {"all", "speech", "music"}
        assert by["speech"]["frames"] + by["music"]["frames"] == n_held
    layers = pd.read_csv(tmp_path / "ev" / "layers.csv")
    assert list(layers.loc[layers["domain"] == "all", "hook"]) == HOOKS
    assert set(layers["domain"]) == {"all", "speech", "music"} and not layers["in_sample"].any()
    assert (tmp_path / "ev" / "layers.html").is_file()


def test_heldout_figures_differ_from_in_sample_when_heldout_data_is_new(cache, tmp_path):
    """Planted: train on speech tones only (all noise clips held out): the held-out noise FVU is
    far worse than the in-sample FVU on the training clips; an eval without a split says in-sample."""
    ids = tmp_path / "noise.txt"
    ids.write_text("\n".join(f"c{i}" for i in range(8, 12)))
    out = tmp_path / "saes"
    _train(cache, out, "--holdout-file", str(ids))
    sae_dir = out / HOOKS[1]
    from sae.cli import evaluate_sae

    held = evaluate_sae(sae_dir, cache, tmp_path / "ev_h", verbose=False)
    assert set(held["metrics_by_domain"]) == {"all", "music"} and not held["in_sample"]
    train_ids = tmp_path / "train.txt"
    train_ids.write_text("\n".join(f"c{i}" for i in range(8)))
    with pytest.raises(ValueError, match="trained on"):  # asking for training clips as "held out" is refused
        evaluate_sae(sae_dir, cache, tmp_path / "ev_t", holdout_file=train_ids, verbose=False)
    (out / "holdout.json").unlink()
    insample = evaluate_sae(sae_dir, cache, tmp_path / "ev_i", verbose=False)
    assert insample["in_sample"] is True
    assert held["metrics"]["fvu"] > 2 * insample["metrics_by_domain"]["speech"]["fvu"], \
        (held["metrics"]["fvu"], insample["metrics_by_domain"]["speech"]["fvu"])


def test_resumed_run_keeps_its_split(cache, tmp_path):
    first = holdout.for_training(cache, tmp_path, fraction=0.25, by="clip", seed=0)
    again = holdout.for_training(cache, tmp_path, fraction=0.5, by="speaker", seed=3)
    assert again["heldout_clips"] == first["heldout_clips"]
    assert holdout.for_training(cache, tmp_path / "none") is None
