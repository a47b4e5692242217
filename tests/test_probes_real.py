"""Real check on real weights: whisper-tiny.en phone identity is linearly decodable in the encoder.

Synthetic multi-voice espeak speech (exact phone tiers, 4 voices, speaker-disjoint folds) and,
when present, the hand-aligned TextGrid speech in ../shared/data (one speaker: clip-disjoint
folds). Accuracy must be far above the majority baseline in the upper encoder layers, the
shuffled-label control must stay at chance, and the selectivity must be clearly positive.
"""
from __future__ import annotations

import numpy as np
import pytest

from probes import LinearProbe, sweep

HOOKS = ["encoder.hook_conv_out", "encoder.blocks.*.hook_resid_post"]


def _model():
    from workbench.models import load

    return load("whisper-tiny.en")


def _print_curve(title, res):
    cols = ["hook", "accuracy", "accuracy_std", "majority", "shuffled_accuracy", "control_accuracy", "selectivity"]
    print(f"\n{title}\n" + res.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _check_upper_layers(res):
    s = res.summary.set_index("hook")
    upper = s.loc[["encoder.blocks.2.hook_resid_post", "encoder.blocks.3.hook_resid_post"]]
    assert (upper["accuracy"] > upper["majority"] + 0.25).all(), upper
    assert (upper["accuracy"] > 2 * upper["majority"]).all(), upper
    assert (upper["selectivity"] > 0.15).all(), upper
    assert (res.folds["shuffled_accuracy"] <= res.folds["shuffled_upper"]).all()


@pytest.mark.slow
@pytest.mark.real_weights
def test_whisper_tiny_phone_probe_on_synthetic_voices(tiny_en_wheel, tmp_path):
    from workbench.cache import build_cache
    from workbench.corpus.synth import synth_corpus

    corpus = synth_corpus(24, tmp_path / "synth", seed=0, n_speakers=4, verbose=False)
    cache = build_cache(_model(), corpus, HOOKS, tmp_path / "cache", verbose=False)
    assert len(cache.hooks) == 5
    res = sweep(cache, "phones", split="speaker", folds=4, max_frames=2000, seed=0,
                probe=LinearProbe(Cs=(0.1, 1.0)), verbose=False)
    _print_curve("whisper-tiny.en phones, 24 synthetic clips / 4 voices, speaker folds", res)
    assert res.folds["n_classes_train"].min() >= 25  # a real phone inventory, not a few classes
    _check_upper_layers(res)


@pytest.mark.slow
@pytest.mark.real_weights
@pytest.mark.shared_data
def test_whisper_tiny_phone_probe_on_textgrid_speech(tiny_en_wheel, shared_data, tmp_path):
    from workbench.cache import build_cache
    from workbench.corpus import load_corpus
    from workbench.corpus.types import Corpus

    full = load_corpus(shared_data)
    clips = [c for c in full if c.tiers.get("phones") and (c.duration_s or 0) > 5]
    if len(clips) < 3:
        pytest.skip("fewer than 3 TextGrid-aligned speech clips in shared data")
    cache = build_cache(_model(), Corpus(clips, root=full.root), HOOKS, tmp_path / "cache", verbose=False)
    res = sweep(cache, "phones", split="clip", folds=len(clips), max_frames=2000, seed=0,
                probe=LinearProbe(Cs=(0.1, 1.0)), verbose=False)
    _print_curve(f"whisper-tiny.en phones, {len(clips)} TextGrid clips, clip folds", res)
    _check_upper_layers(res)
    assert np.isfinite(res.summary["macro_f1"]).all()
