"""Each corpus layout reader on a fixture written in that exact layout (tests/corpus_layouts.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import corpus_layouts as L
from workbench.corpus import build_corpus, load_corpus
from workbench.corpus.formats import ReadContext, detect_format, iter_clips, subset
from workbench.corpus.formats.timit import read_sphere_header


def test_detect_format_each_layout(tmp_path):
    made = {"timit": L.timit, "librispeech": L.librispeech, "commonvoice": L.commonvoice, "fleurs": L.fleurs,
            "esc50": L.esc50, "urbansound8k": L.urbansound8k, "fsd50k": L.fsd50k, "hf": L.hf_dataset}
    for fmt, make in made.items():
        assert detect_format(make(tmp_path / fmt)) == fmt, fmt
    # MUSAN and WHAM! look like plain folder trees: never guessed
    assert detect_format(L.musan(tmp_path / "musan")) == "folder"
    assert detect_format("someone/some-dataset") == "hf"


def test_timit_tiers_match_sample_offsets_exactly(tmp_path):
    root = L.timit(tmp_path / "TIMIT")
    clips = list(iter_clips(root, "timit"))
    assert len(clips) == 4
    c = next(c for c in clips if c.id == "timit_train_dr1_fcjf0_sa1")
    assert (c.speaker, c.extra["dialect"], c.extra["split"], c.extra["sex"], c.extra["sentence_type"]) == \
        ("fcjf0", "dr1", "train", "f", "sa")
    assert [(s.start_s * 16000, s.end_s * 16000, s.label) for s in c.tiers["phones61"]] == \
        [(float(a), float(b), lab) for a, b, lab in L.TIMIT_PHN]
    assert [(s.start_s, s.end_s, s.label) for s in c.tiers["words"]] == [(a / 16000, b / 16000, w)
                                                                          for a, b, w in L.TIMIT_WRD]
    # the 61 -> 39 folding: sh, iy, hv->HH, ae, dcl->sil, jh, axr->ER; h# -> sil
    assert [s.label for s in c.tiers["phones"]] == ["sil", "SH", "IY", "HH", "AE", "sil", "JH", "ER", "sil"]
    assert c.transcript == "She had your dark suit."
    assert read_sphere_header(c.path)["sample_count"] == 12000


def test_timit_builds_and_the_audio_decodes(tmp_path):
    res = build_corpus(L.timit(tmp_path / "TIMIT"), tmp_path / "out", verbose=False)
    assert len(res.corpus) == 4 and not res.skipped
    assert all(c.duration_s == pytest.approx(12000 / 16000) for c in res.corpus)
    again = load_corpus(tmp_path / "out", fold_phones=False)
    assert again[0].tiers["phones61"][1].label == "sh"


def test_timit_shorten_is_reported_by_name(tmp_path):
    root = L.timit(tmp_path / "TIMIT")
    bad = root / "TRAIN" / "DR1" / "FCJF0" / "SA1.WAV"
    L.write_sphere(bad, L.tone(100), coding="pcm,embedded-shorten-v2.00")
    ctx = ReadContext()
    ids = [c.id for c in iter_clips(root, "timit", ctx)]
    assert "timit_train_dr1_fcjf0_sa1" not in ids and len(ids) == 3
    assert "sph2pipe" in ctx.errors[0]["error"] and ctx.errors[0]["path"] == str(bad)


def test_librispeech(tmp_path):
    clips = list(iter_clips(L.librispeech(tmp_path / "LS"), "librispeech"))
    assert len(clips) == 6
    c = clips[0]
    assert (c.id, c.speaker, c.extra["chapter"], c.extra["subset"]) == ("1272-128104-0000", "1272", "128104",
                                                                       "dev-clean")
    assert c.transcript == "MISTER QUILTER IS THE APOSTLE 0"


def test_librispeech_missing_transcript_is_reported(tmp_path):
    root = L.librispeech(tmp_path / "LS")
    L.write_wav(root / "dev-clean" / "1272" / "128104" / "1272-128104-0009.flac", fmt="FLAC")
    ctx = ReadContext()
    assert len(list(iter_clips(root, "librispeech", ctx))) == 6
    assert ctx.errors[0]["path"].endswith("1272-128104-0009.flac") and "transcript" in ctx.errors[0]["error"]
    with pytest.raises(ValueError, match="1272-128104-0009.flac"):
        list(iter_clips(root, "librispeech", ReadContext(strict=True)))


def test_commonvoice_and_split(tmp_path):
    root = L.commonvoice(tmp_path / "cv")
    clips = list(iter_clips(root, "commonvoice"))
    assert len(clips) == 6 and clips[0].speaker == "spk0" and clips[0].transcript == "Sentence number 0."
    assert {c.extra["split"] for c in clips} == {"train", "dev"}
    dev = list(iter_clips(root, "commonvoice", ReadContext(options={"split": "dev"})))
    assert [c.id for c in dev] == ["common_voice_en_104", "common_voice_en_105"]


def test_commonvoice_bad_rows_named_rest_kept(tmp_path):
    root = L.commonvoice(tmp_path / "cv")
    (root / "clips" / "common_voice_en_101.wav").unlink()
    ctx = ReadContext()
    clips = list(iter_clips(root, "commonvoice", ctx))
    assert len(clips) == 5
    assert ctx.errors[0]["path"] == str(root / "train.tsv") and ctx.errors[0]["line"] == 3
    (root / "dev.tsv").write_text("client_id\tpath\n")  # no sentence column: the whole table is unusable
    with pytest.raises(ValueError, match=r"dev\.tsv: column\(s\) sentence missing"):
        list(iter_clips(root, "commonvoice"))


def test_fleurs(tmp_path):
    clips = list(iter_clips(L.fleurs(tmp_path / "fl"), "fleurs"))
    assert len(clips) == 5
    assert (clips[0].transcript, clips[0].extra["sentence_id"], clips[0].extra["gender"]) == ("raw text 0", "0",
                                                                                              "FEMALE")


def test_esc50_labels_folds_sources(tmp_path):
    clips = list(iter_clips(L.esc50(tmp_path / "esc"), "esc50"))
    assert len(clips) == 8
    assert [c.domain for c in clips[:4]] == ["dog", "rooster", "rain", "crying_baby"]
    assert clips[0].extra["fold"] == 1 and clips[0].extra["label"] == "dog"
    assert clips[0].extra["source_id"] == clips[1].extra["source_id"] == "100032"


def test_urbansound8k_and_fsd50k(tmp_path):
    us = list(iter_clips(L.urbansound8k(tmp_path / "us"), "urbansound8k"))
    assert [c.domain for c in us[:2]] == ["dog_bark", "siren"] and us[0].extra["source_id"] == "100032"
    assert {c.extra["fold"] for c in us} == {1, 2}
    fsd = list(iter_clips(L.fsd50k(tmp_path / "fsd"), "fsd50k"))
    assert [(c.id, c.domain, c.extra["labels"], c.extra["split"]) for c in fsd] == [
        ("64760", "Electric_guitar", "Electric_guitar,Guitar", "train"), ("16399", "Bark", "Bark,Dog", "val"),
        ("37199", "Rain", "Rain", "eval")]


def test_label_column_absent_names_file(tmp_path):
    root = L.esc50(tmp_path / "esc")
    (root / "meta" / "esc50.csv").write_text("filename,fold\n1-1-A-0.wav,1\n")
    with pytest.raises(ValueError, match=r"esc50\.csv: column\(s\) category missing"):
        list(iter_clips(root, "esc50"))


def test_musan_and_wham(tmp_path):
    m = list(iter_clips(L.musan(tmp_path / "musan"), "musan"))
    assert sorted({c.domain for c in m}) == ["music", "noise", "speech"]
    assert m[0].extra["collection"] == "fma"
    w = list(iter_clips(L.wham(tmp_path / "wham"), "wham", ReadContext(options={"split": "tt"})))
    assert [c.id for c in w] == ["wham_tt_tt0_noise", "wham_tt_tt1_noise"] and w[0].domain == "noise"


def test_hf_saved_dataset_writes_embedded_audio(tmp_path):
    root = L.hf_dataset(tmp_path / "hf")
    res = build_corpus(root, tmp_path / "out", verbose=False)
    clips = list(res.corpus)
    assert len(clips) == 5 and not res.skipped
    assert [c.extra["split"] for c in clips] == ["train"] * 3 + ["test"] * 2
    assert clips[0].transcript == "hello number 0" and clips[1].domain == "music" and clips[1].speaker == "1"
    audio = tmp_path / "out" / clips[0].path
    assert audio.parent == tmp_path / "out" / "audio" and audio.suffix == ".flac"
    import soundfile as sf

    x, sr = sf.read(audio, dtype="float32")
    assert sr == 16000 and np.allclose(x, L.tone(1600, 0), atol=1e-4)
    only = build_corpus(root, tmp_path / "out2", verbose=False, options={"split": "test", "text_column": "sentence"})
    assert len(only.corpus) == 2
    with pytest.raises(ValueError, match="no split"):
        build_corpus(root, tmp_path / "out3", verbose=False, options={"split": "validation"})


def test_max_clips_is_a_seeded_subset(tmp_path):
    root = L.esc50(tmp_path / "esc", n=20)
    a = build_corpus(root, tmp_path / "a", verbose=False, max_clips=5, seed=3)
    b = build_corpus(root, tmp_path / "b", verbose=False, max_clips=5, seed=3)
    c = build_corpus(root, tmp_path / "c", verbose=False, max_clips=5, seed=4)
    ids = [x.id for x in a.corpus]
    assert len(ids) == 5 and ids == [x.id for x in b.corpus] and ids != [x.id for x in c.corpus]
    assert subset(iter([]), 3) == []


def test_corrupt_clip_skipped_by_name_or_strict(tmp_path):
    root = L.esc50(tmp_path / "esc")
    bad = sorted((root / "audio").iterdir())[0]
    bad.write_bytes(b"RIFF....not audio at all" * 10)
    res = build_corpus(root, tmp_path / "out", verbose=False)
    assert len(res.corpus) == 7
    assert [e["path"] for e in res.skipped if e["action"] == "skipped"] == [str(bad.resolve())]
    with pytest.raises(ValueError, match=bad.name):
        build_corpus(root, tmp_path / "strict", verbose=False, strict=True)


def test_build_resumes_without_rechecking(tmp_path, monkeypatch):
    """An interrupted build reuses what it already decoded: only the rest is checked again."""
    import workbench.corpus.manifest as manifest

    root = L.esc50(tmp_path / "esc", n=6)
    calls = []
    real = manifest.check_audio

    def flaky(path):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(manifest, "check_audio", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(root, tmp_path / "out", verbose=False)
    assert len((tmp_path / "out" / ".build_progress.jsonl").read_text().splitlines()) == 3
    calls.clear()
    res = build_corpus(root, tmp_path / "out", verbose=False)
    assert len(res.corpus) == 6 and len(calls) == 3
    assert not (tmp_path / "out" / ".build_progress.jsonl").exists()
    rows = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert all(r["duration_s"] == pytest.approx(0.05) for r in rows)


def test_cli_build_format(tmp_path, capsys):
    from workbench.cli import main

    root = L.urbansound8k(tmp_path / "us")
    assert main(["corpus", "build", str(root), "--format", "urbansound8k", "--out", str(tmp_path / "o"), "-q",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 6 and summary["domains"] == {"dog_bark": 3, "siren": 3}
