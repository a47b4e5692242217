"""Defect 1: training, `sae eval` and the splice agree on which frames an SAE is a model of.

`sae train` drops frames above ``--max-norm-ratio`` x the median norm (Whisper's massive frames)
and records the absolute limit in train_config.json; eval scores the headline metrics on the same
frames (and reports both variants); the splice passes the rest through unreconstructed. A low
ratio (1.1) makes about half the frames "massive", so every path is exercised on a tiny cache.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from workbench.cli import main
from workbench.corpus.types import Clip, Corpus

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # a tiny Whisper cache: ~5 s idle
HOOK = "encoder.hook_conv_out"  # its norms follow the audio level (half of each clip is near-silent)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from workbench.cache import build_cache
    from workbench.models.whisper import random_whisper

    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    clips = []
    for i in range(6):
        audio = (0.05 + 0.1 * i) * rng.standard_normal(16000)
        audio[:8000] *= 0.001
        sf.write(root / "audio" / f"c{i}.wav", audio.astype(np.float32), 16000)
        clips.append(Clip(f"c{i}", f"audio/c{i}.wav", domain="speech" if i % 2 else "music", duration_s=1.0))
    return build_cache(random_whisper(seed=0), Corpus(clips, root=root), [HOOK], root / "cache", verbose=False)


def _train(cache, out, ratio: str):
    assert main(["sae", "train", "--cache", str(cache.root), "--hook", HOOK, "--expansion", "2", "--k", "4",
                 "--tokens", "4000", "--batch-size", "64", "--out", str(out), "--threads", "1", "--quiet",
                 "--max-norm-ratio", ratio]) == 0


def test_training_eval_and_splice_use_one_frame_filter(cache, tmp_path):
    from sae.cli import evaluate_sae
    from sae.data import CacheSource
    from sae.io import load_sae
    from sae.massive import recorded_filter
    from sae.splice import SpliceFn

    out = tmp_path / "filtered"
    _train(cache, out, "1.1")
    rec = json.loads((out / "train_config.json").read_text())["source"]["frame_filter"][HOOK]
    limit = rec["norm_limit"]
    assert limit == pytest.approx(1.1 * rec["median_norm"]) and 0.1 < rec["dropped_fraction_estimate"] < 0.9
    assert recorded_filter(out / HOOK, HOOK)["norm_limit"] == limit

    # training side: no batch holds a frame above the limit
    src = CacheSource(cache, [HOOK], 64, seed=0, max_norm_ratio=1.1)
    assert max(float(b[HOOK].norm(dim=1).max()) for b in src.epoch(0)) <= limit

    # eval side: the headline metrics are on exactly the frames at or below the same limit
    norms = np.linalg.norm(cache.load(HOOK, np.arange(cache.n_frames(HOOK))), axis=1)
    res = evaluate_sae(out / HOOK, cache, tmp_path / "ev", verbose=False)
    assert res["metrics"]["frames"] == int((norms <= limit).sum()) == res["metrics_without_massive"]["frames"]
    assert res["metrics_all_frames"]["frames"] == len(norms)
    assert res["massive_frames"]["frames"] == int((norms > limit).sum()) > 0
    assert res["massive_frames"]["norm_limit"] == limit and not res["massive_frames"]["trained_on_massive"]

    # splice side: frames above the limit pass through unchanged, the others are reconstructed
    sae = load_sae(out / HOOK)
    x = torch.from_numpy(cache.load(HOOK, np.arange(50)))
    fn = SpliceFn(sae, norm_limit=limit)
    fn.start([50])
    y = fn(x)
    big = x.norm(dim=1) > limit
    assert torch.equal(y[big], x[big]) and not torch.equal(y[~big], x[~big])
    assert fn.passed == int(big.sum()) and fn.seen == 50


def test_training_on_all_frames_is_recorded_and_scored_on_all(cache, tmp_path):
    from sae.cli import evaluate_sae

    out = tmp_path / "all"
    _train(cache, out, "0")
    assert json.loads((out / "train_config.json").read_text())["source"]["frame_filter"] is None
    res = evaluate_sae(out / HOOK, cache, tmp_path / "ev", verbose=False)
    assert res["metrics"]["frames"] == cache.n_frames(HOOK) == res["metrics_all_frames"]["frames"]
    assert res["massive_frames"]["trained_on_massive"]


def test_cache_reader_keeps_every_frame_unless_asked(cache):
    n = cache.n_frames(HOOK)
    assert sum(len(b) for b in cache.batches(HOOK, 64)) == n
    assert sum(len(b) for b in cache.batches(HOOK, 64, max_norm_ratio=1.1)) < n


def test_runs_without_a_recorded_limit_are_treated_as_trained(tmp_path):
    """Old cache runs used the silent 10x default; streamed runs record only the ratio."""
    from sae.massive import recorded_filter

    for source, expect in (({"source": "cache"}, 10.0), ({"source": "model-stream", "max_norm_ratio": 5.0}, 5.0),
                           ({"source": "model-stream", "max_norm_ratio": None}, None), ({"source": "tensors"}, None)):
        d = tmp_path / str(len(list(tmp_path.iterdir())))
        (d / "h").mkdir(parents=True)
        (d / "train_config.json").write_text(json.dumps({"source": source}))
        got = recorded_filter(d / "h", "h")
        assert (got and got["max_norm_ratio"]) == expect and (got is None or got["norm_limit"] is None)
