"""Activation cache: frame-exact labels, values, reading API, bad input, refused reruns.

Models are real: a tiny random-init Whisper through the whisper adapter, and a small
two-rate conv model (two hook points at 100 and 50 Hz -> two frame tables). The speech is
synthetic (espeak-ng) with exact phone/word times. Helpers here are imported by the
other cache test modules.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from workbench.audio import load_audio
from workbench.cache import ActivationCache, CacheMismatchError, build_cache
from workbench.cache.frames import labels_at
from workbench.corpus.types import Clip, Corpus, Segment
from workbench.models.base import AudioModel

RESID = "encoder.blocks.*.hook_resid_post"
HOOKS = [RESID, "encoder.hook_conv_out"]


# --- helpers shared with test_cache_resume / test_cache_torchrun ------------------------------------
def tiny_whisper(seed: int = 0):
    from workbench.models.whisper import random_whisper

    return random_whisper(seed=seed)


def make_corpus(root: Path, n_speech: int = 4, seed: int = 0, with_music: bool = True) -> Corpus:
    """Synthetic speech (exact phone/word tiers) plus one tone clip in domain "music"."""
    from workbench.corpus.synth import synth_corpus

    speech = synth_corpus(n_speech, root, seed=seed, n_speakers=2, verbose=False)
    clips = list(speech.clips)
    if with_music:
        t = np.arange(int(1.3 * 16000)) / 16000
        sf.write(root / "audio" / "tone.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
        clips.insert(2, Clip("tone", "audio/tone.wav", domain="music", duration_s=1.3, extra={"source": "tone"}))
    corpus = Corpus(clips, root=root)
    corpus.save(root / "manifest.jsonl")
    return corpus


def hook_hashes(cache: ActivationCache) -> dict[str, tuple[int, str]]:
    """Rows and sha256 of every hook's bytes: identical caches have identical hashes."""
    return {h: (cache.n_frames(h), hashlib.sha256(np.ascontiguousarray(cache.acts(h)).tobytes()).hexdigest())
            for h in cache.hooks}


class TwoRateModel(AudioModel):
    """Two conv layers: ``fast.hook_out`` at 100 Hz (8 ch) and ``slow.hook_out`` at 50 Hz (6 ch)."""

    name = "two-rate"
    spec = "two-rate-test"
    sample_rate = 16000

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fast = nn.Conv1d(1, 8, kernel_size=160, stride=160)
        self.slow = nn.Conv1d(8, 6, kernel_size=2, stride=2)
        self.fast_out, self.slow_out = nn.Identity(), nn.Identity()

    def hook_modules(self):
        return {"fast.hook_out": self.fast_out, "slow.hook_out": self.slow_out}

    def frame_rate(self, hook: str) -> float:
        return {"fast.hook_out": 100.0, "slow.hook_out": 50.0}[hook]

    def _forward(self, audio):
        n = max(len(a) for a in audio)
        n = -(-n // 320) * 320
        x = torch.zeros(len(audio), 1, n)
        for i, a in enumerate(audio):
            x[i, 0, : len(a)] = torch.from_numpy(a)
        f = torch.tanh(self.fast(x))
        self.fast_out(f.transpose(1, 2))
        self.slow_out(self.slow(f).transpose(1, 2))


# --- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def model():
    return tiny_whisper()


@pytest.fixture(scope="module")
def cache(model, corpus, tmp_path_factory) -> ActivationCache:
    # small batches: several shards per hook get merged; overlap: loader and writer threads
    return build_cache(model, corpus, HOOKS, tmp_path_factory.mktemp("c") / "cache", batch_seconds=4.0,
                       verbose=False, overlap=True)


# --- tests -------------------------------------------------------------------------------------------
def test_labels_at_boundaries():
    segs = [Segment(0.0, 0.1, "sil"), Segment(0.1, 0.25, "AH"), Segment(0.3, 0.4, "T")]
    centres = np.array([0.0, 0.0999, 0.1, 0.2499, 0.25, 0.29, 0.3, 0.4, -0.01])
    labels, seg = labels_at(segs, centres)
    assert labels.tolist() == ["sil", "sil", "AH", "AH", None, None, "T", None, None]
    assert seg.tolist() == [0, 0, 1, 1, -1, -1, 2, -1, -1]
    # index refers to the tier as given, even when it is not sorted
    labels, seg = labels_at(segs[::-1], np.array([0.05, 0.35]))
    assert labels.tolist() == ["sil", "T"] and seg.tolist() == [2, 0]


def test_layout_and_meta(cache, model, corpus):
    meta = cache.meta
    assert cache.hooks == model.resolve_hooks(HOOKS) == ["encoder.hook_conv_out", "encoder.blocks.0.hook_resid_post",
                                                         "encoder.blocks.1.hook_resid_post"]
    assert meta["dtype"] == "float16" and meta["corpus"]["fingerprint"] == corpus.fingerprint()
    assert meta["model"]["spec"] == "random-whisper" and meta["complete"] is True
    assert set(meta["frame_rates"].values()) == {50.0} and len(meta["frame_tables"]) == 1
    assert {"torch", "numpy"} <= set(meta["versions"]) and meta["created"]
    for h in cache.hooks:
        mm = cache.acts(h)
        assert isinstance(mm, np.memmap) and mm.dtype == np.float16 and mm.shape == (cache.n_frames(h), 64)
        assert cache.d_model(h) == 64
    files = sorted(p.relative_to(cache.root).as_posix() for p in cache.root.rglob("*") if p.is_file())
    assert not [f for f in files if "shard_" in f or "part_" in f or f.endswith(".tmp")]  # all merged
    assert (cache.root / "summary.json").is_file() and (cache.root / "frames").is_dir()


def test_frames_exact_labels_and_counts(cache, model, corpus):
    for hook in cache.hooks:
        df = cache.frames(hook)
        assert len(df) == cache.n_frames(hook)
        assert df["clip_id"].unique().tolist() == [c.id for c in corpus.clips]  # corpus order
        for clip in corpus.clips:
            part = df[df["clip_id"] == clip.id]
            n = model.n_frames(hook, len(load_audio(corpus.audio_path(clip), sr=16000)))
            assert len(part) == n and part["frame"].tolist() == list(range(n))
            times = model.frame_times(hook, n)
            np.testing.assert_array_equal(part[["start_s", "end_s"]].to_numpy(), times)
            centres = times.mean(axis=1)
            for tier in ("phones", "words"):
                truth = [clip.label_at(tier, t) for t in centres]  # independent reference
                assert part[tier].tolist() == truth, (clip.id, tier)
                seg = part[f"{tier}_seg"].to_numpy()
                segs = clip.tiers.get(tier, [])
                assert [segs[i].label if i >= 0 else None for i in seg] == truth
            assert set(part["domain"]) == {clip.domain} and set(part["speaker"]) == {clip.speaker}
            assert set(part["source"]) == {clip.extra["source"]}
    # speech frames really have phone labels, the tone clip has none
    phones = cache.labels("phones")
    speech = cache.select(domain="speech")
    assert np.mean([p is not None for p in phones[speech]]) > 0.9
    assert all(p is None for p in phones[cache.select(domain="music")])
    assert {"AH", "sil"} <= set(p for p in phones if p)


def test_values_equal_run_with_cache(cache, model, corpus):
    for clip in corpus.clips:
        audio = load_audio(corpus.audio_path(clip), sr=16000)
        ref = model.run_with_cache(audio, cache.hooks)
        rows = cache.select(clips=[clip.id])
        for h in cache.hooks:
            r = ref[h].float().numpy()
            got = cache.load(h, rows)
            assert got.dtype == np.float32 and got.shape == r.shape
            np.testing.assert_allclose(got, r, rtol=2**-10, atol=1e-3 * np.abs(r).max())
            np.testing.assert_array_equal(np.asarray(cache.acts(h)[rows]).astype(np.float32), got)
    # null check: the comparison can fail: another clip's activations do not match
    a, b = cache.select(clips=["synth_00000"]), cache.select(clips=["synth_00001"])
    h = cache.hooks[-1]
    m = min(len(a), len(b))
    assert not np.allclose(cache.load(h, a[:m]), cache.load(h, b[:m]), rtol=1e-2)


def test_acts_torch_shares_memmap(cache):
    h = cache.hooks[1]
    t = cache.acts_torch(h)
    assert t.dtype == torch.float16 and tuple(t.shape) == cache.acts(h).shape
    np.testing.assert_array_equal(t[:50].float().numpy(), cache.load(h, np.arange(50)))


def test_select_and_corpus(cache, corpus):
    music = cache.select(domain="music")
    df = cache.frames()
    assert len(music) > 0 and set(df["domain"].iloc[music]) == {"music"}
    both = cache.select(domain=["music", "speech"])
    assert len(both) == len(df)
    two = cache.select(clips=["synth_00001", "tone"])
    assert set(df["clip_id"].iloc[two]) == {"synth_00001", "tone"}
    assert len(cache.select(domain="speech", clips=["tone"])) == 0
    with pytest.raises(ValueError, match="nope"):
        cache.select(clips=["nope"])
    with pytest.raises(ValueError, match="domains"):
        cache.select(domain="birdsong")
    with pytest.raises(KeyError, match="cached hooks"):
        cache.acts("encoder.blocks.9.hook_resid_post")
    back = cache.corpus
    assert [c.id for c in back] == [c.id for c in corpus]
    assert back[0].tiers["phones"] == corpus[0].tiers["phones"]
    assert back.audio_path(back[0]).is_file()


def _rows_of(got: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Row index in ``full`` of every row of ``got`` (each row of ``full`` used at most once)."""
    where: dict[bytes, list[int]] = {}
    for i, row in enumerate(full):
        where.setdefault(row.tobytes(), []).append(i)
    return np.array([where[row.tobytes()].pop(0) for row in got], dtype=np.int64)


def test_batches_cover_every_frame_once_shuffled(cache):
    h = cache.hooks[2]
    full = cache.load(h)
    got = list(cache.batches(h, 100, max_norm_ratio=None, chunk_rows=256))
    assert [len(b) for b in got[:-1]] == [100] * (len(got) - 1) and 0 < len(got[-1]) <= 100
    assert all(b.dtype == torch.float32 for b in got)
    order = _rows_of(torch.cat(got).numpy(), full)
    assert sorted(order) == list(range(len(full)))  # every frame exactly once
    clips = cache.frames(h)["clip_id"].to_numpy()
    assert len(set(clips[order[:100]])) >= 3  # frame-level shuffle, not clip by clip
    again = torch.cat(list(cache.batches(h, 100, max_norm_ratio=None, chunk_rows=256)))
    other = torch.cat(list(cache.batches(h, 100, max_norm_ratio=None, seed=1)))
    assert torch.equal(again, torch.cat(got)) and not torch.equal(other, again)
    plain = torch.cat(list(cache.batches(h, 64, shuffle=False, max_norm_ratio=None)))
    np.testing.assert_array_equal(plain.numpy(), full)
    assert sum(len(b) for b in cache.batches(h, 100, max_norm_ratio=None, drop_last=True)) == len(full) // 100 * 100
    assert next(cache.batches(h, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_batches_options(cache):
    h = cache.hooks[2]
    full = cache.load(h)
    norms = np.linalg.norm(full, axis=1)
    # exact median (the sample holds every frame): ratio 1 keeps frames at or below it
    kept = torch.cat(list(cache.batches(h, 50, max_norm_ratio=1.0))).numpy()
    assert len(kept) == int((norms <= np.median(norms)).sum())
    assert np.linalg.norm(kept, axis=1).max() <= np.median(norms) * (1 + 1e-6)
    # no outliers in real activations: the default ratio drops nothing (null test)
    assert sum(len(b) for b in cache.batches(h, 50)) == len(full)
    clips = cache.frames(h)["clip_id"].to_numpy()
    capped = torch.cat(list(cache.batches(h, 30, max_norm_ratio=None, max_frames_per_clip=20))).numpy()
    rows = _rows_of(capped, full)
    counts = {c: int((clips[rows] == c).sum()) for c in set(clips)}
    assert set(counts.values()) == {20} and len(rows) == 20 * len(set(clips))
    sub = cache.select(h, clips=["tone"])
    only = torch.cat(list(cache.batches(h, 16, rows=sub, max_norm_ratio=None))).numpy()
    assert sorted(_rows_of(only, full)) == sub.tolist()


def test_batches_drop_planted_outliers(cache, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(cache.root, copy)
    c = ActivationCache.open(copy)
    h = c.hooks[2]
    planted = np.array([5, 77, 300, c.n_frames(h) - 1])
    mm = c.acts(h, mode="r+")
    mm[planted] *= 50  # 50x the norm: far above 10x the median
    mm.flush()
    del mm
    full = c.load(h)
    kept = _rows_of(torch.cat(list(c.batches(h, 64, max_norm_ratio=10))).numpy(), full)
    assert sorted(set(range(len(full))) - set(kept.tolist())) == planted.tolist()
    assert len(torch.cat(list(c.batches(h, 64)))) == len(full)  # a reader filters only when asked


def test_bfloat16_cache(model, corpus, tmp_path):
    sub = Corpus(corpus.clips[:2], root=corpus.root)
    c = build_cache(model, sub, "encoder.blocks.1.hook_resid_post", tmp_path / "bf", dtype="bfloat16",
                    verbose=False)
    h = c.hooks[0]
    assert c.acts(h).dtype == np.uint16 and c.acts_torch(h).dtype == torch.bfloat16
    ref = model.run_with_cache(load_audio(sub.audio_path(sub[0]), sr=16000), [h])[h].numpy()
    got = c.load(h, c.select(clips=[sub[0].id]))
    np.testing.assert_allclose(got, ref, rtol=2**-7, atol=1e-2 * np.abs(ref).max())
    np.testing.assert_array_equal(c.acts_torch(h)[:10].float().numpy(), got[:10])


def test_two_frame_rates_two_tables(corpus, tmp_path):
    m = TwoRateModel()
    c = build_cache(m, corpus, "*", tmp_path / "tr", batch_seconds=3.0, verbose=False)
    assert len(c.meta["frame_tables"]) == 2
    for h, rate in (("fast.hook_out", 100.0), ("slow.hook_out", 50.0)):
        df = c.frames(h)
        assert len(df) == c.n_frames(h) == c.acts(h).shape[0]
        assert np.allclose(df["end_s"] - df["start_s"], 1 / rate)
        for clip in corpus.clips[:2]:
            audio = load_audio(corpus.audio_path(clip), sr=16000)
            rows = c.select(h, clips=[clip.id])
            assert len(rows) == m.n_frames(h, len(audio))
            ref = m.run_with_cache(audio, [h])[h].numpy()
            np.testing.assert_allclose(c.load(h, rows), ref, rtol=2**-10, atol=1e-3)
            centres = df.iloc[rows][["start_s", "end_s"]].to_numpy().mean(axis=1)
            assert df["phones"].iloc[rows].tolist() == [clip.label_at("phones", t) for t in centres]
    assert c.n_frames("fast.hook_out") > 1.9 * c.n_frames("slow.hook_out")


def test_corrupt_clip_reported_and_skipped(model, corpus, tmp_path):
    root = Path(corpus.root)
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"fLaC" + bytes(range(256)) * 4)  # a FLAC header and garbage
    clips = [corpus[0], Clip("broken", str(bad), speaker="x"), corpus[1]]
    c = build_cache(model, Corpus(clips, root=root), RESID, tmp_path / "c", verbose=False)
    assert c.clip_ids == [corpus[0].id, corpus[1].id]
    assert list(c.skipped) == ["broken"] and "broken.flac" in c.skipped["broken"]
    errors = [json.loads(line) for line in (c.root / "errors.jsonl").read_text().splitlines()]
    assert [e["clip_id"] for e in errors] == ["broken"] and "broken.flac" in errors[0]["error"]
    summary = json.loads((c.root / "summary.json").read_text())
    assert summary["clips_skipped"] == 1 and summary["clips_cached"] == 2
    assert set(c.frames()["clip_id"]) == {corpus[0].id, corpus[1].id}

    # strict: fails fast naming the file; what was cached before it stays readable
    with pytest.raises(ValueError, match="broken.flac"):
        build_cache(model, Corpus(clips, root=root), RESID, tmp_path / "s", strict=True, batch_seconds=0.5,
                    verbose=False)
    kept = ActivationCache.open(tmp_path / "s")
    assert kept.clip_ids == [corpus[0].id]


def test_mismatched_rerun_refused(model, corpus, tmp_path):
    sub = Corpus(corpus.clips[:2], root=corpus.root)
    out = tmp_path / "c"
    first = build_cache(model, sub, RESID, out, verbose=False)
    before = hook_hashes(first)
    with pytest.raises(CacheMismatchError, match="hooks"):
        build_cache(model, sub, "encoder.hook_conv_out", out, verbose=False)
    with pytest.raises(CacheMismatchError, match="dtype"):
        build_cache(model, sub, RESID, out, dtype="bfloat16", verbose=False)
    with pytest.raises(CacheMismatchError, match="corpus.fingerprint"):
        build_cache(model, Corpus(corpus.clips[:3], root=corpus.root), RESID, out, verbose=False)
    with pytest.raises(CacheMismatchError, match="model.spec"):
        build_cache(TwoRateModel(), sub, "*", out, verbose=False)
    # a matching rerun is a no-op; nothing was touched by the refused ones
    again = build_cache(model, sub, RESID, out, verbose=False)
    assert hook_hashes(again) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an activation cache"):
        build_cache(model, sub, RESID, tmp_path / "other", verbose=False)


def test_max_clips_then_extend(model, corpus, tmp_path, cache):
    out = tmp_path / "grow"
    part = build_cache(model, corpus, HOOKS, out, max_clips=2, verbose=False)
    assert part.clip_ids == [c.id for c in corpus.clips[:2]] and part.meta["complete"] is False
    full = build_cache(model, corpus, HOOKS, out, batch_seconds=4.0, verbose=False)
    assert full.clip_ids == cache.clip_ids and full.meta["complete"] is True
    for h in cache.hooks:
        np.testing.assert_allclose(full.load(h), cache.load(h), rtol=2**-10, atol=1e-3)
    assert full.frames().equals(cache.frames())


def test_cli_cache_and_info(model, corpus, tmp_path, capsys):
    from workbench.cli import main

    model_dir = tmp_path / "tiny-whisper"
    model.hf.save_pretrained(model_dir)
    model.feature_extractor.save_pretrained(model_dir)
    out = tmp_path / "cli"
    args = ["cache", "--model", str(model_dir), "--corpus", str(Path(corpus.root) / "manifest.jsonl"),
            "--hooks", "encoder.blocks.1.hook_resid_post", "--out", str(out), "--max-clips", "3", "--quiet"]
    assert main(args) == 0
    c = ActivationCache.open(out)
    assert c.clip_ids == [cl.id for cl in corpus.clips[:3]] and c.hooks == ["encoder.blocks.1.hook_resid_post"]
    assert main(["cache-info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "encoder.blocks.1.hook_resid_post" in text and f"{c.n_frames(c.hooks[0])} frames x 64" in text
    # a refused rerun is one clear error line, exit code 2
    assert main(args[:-1] + ["--dtype", "bfloat16", "--quiet"]) == 2
    assert "refusing to append" in capsys.readouterr().err
