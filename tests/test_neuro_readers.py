"""neuro readers: FIF / EDF / BrainVision / CND round trips, BIDS events.tsv, and clear errors for
missing or misaligned stimuli."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from test_neuro_data import make_corpus

from neuro.recording import from_arrays, from_naplib_data, read_recording

SFREQ = 100.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_clips=3, seconds=2.0)


def _raw(corpus, n_ch=4, gap_s=0.5, seed=0, descriptions=None):
    """A continuous recording with each clip's onset annotated; returns (raw, per-trial truth)."""
    import mne

    rng = np.random.default_rng(seed)
    ids = descriptions or [c.id for c in corpus]
    onsets, t = [], gap_s
    for c in corpus:
        onsets.append(t)
        t += c.duration_s + gap_s
    data = rng.normal(size=(n_ch, int(t * SFREQ))) * 1e-5
    info = mne.create_info([f"EEG{i:03d}" for i in range(n_ch)], SFREQ, ch_types="eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_annotations(mne.Annotations(onsets, [c.duration_s for c in corpus], ids))
    truth = [data[:, int(round(o * SFREQ)) : int(round(o * SFREQ)) + int(round(c.duration_s * SFREQ))].T
             for o, c in zip(onsets, corpus)]
    return raw, truth


@pytest.mark.parametrize("fmt,name", [("fif", "sub-01_eeg.fif"), ("edf", "sub-01_eeg.edf"),
                                      ("brainvision", "sub-01_eeg.vhdr")])
def test_round_trip_through_mne_formats(corpus, tmp_path, fmt, name):
    import mne

    raw, truth = _raw(corpus)
    path = tmp_path / name
    if fmt == "fif":
        raw.save(path, verbose="error")
    else:
        importlib.import_module({"edf": "edfio", "brainvision": "pybv"}[fmt])  # declared: missing must fail
        mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    rec = read_recording(path, corpus)
    assert [t.clip_id for t in rec.trials] == [c.id for c in corpus]
    assert rec.sfreq == SFREQ and rec.ch_names == raw.ch_names
    tol = {"fif": 1e-12, "edf": 1e-8, "brainvision": 1e-9}[fmt]  # EDF: 16-bit samples
    for t, want in zip(rec.trials, truth):
        assert t.data.shape == want.shape
        np.testing.assert_allclose(t.data, want, atol=max(tol, 2e-3 * np.abs(want).max() if fmt == "edf" else 0))


def test_folder_and_bids_events_tsv(corpus, tmp_path):
    raw, truth = _raw(corpus, descriptions=["x1", "x2", "x3"])  # annotations that name no clip
    sub = tmp_path / "bids" / "sub-01" / "eeg"
    sub.mkdir(parents=True)
    raw.save(sub / "sub-01_task-listen_eeg.fif", verbose="error")
    onsets = raw.annotations.onset
    rows = ["onset\tduration\tstim_file"] + [f"{o:.3f}\t{c.duration_s}\t{c.path}" for o, c in zip(onsets, corpus)]
    (sub / "sub-01_task-listen_events.tsv").write_text("\n".join(rows) + "\n")
    rec = read_recording(tmp_path / "bids", corpus)  # the folder: finds the one *_eeg.fif, then events.tsv
    assert [t.clip_id for t in rec.trials] == [c.id for c in corpus]
    np.testing.assert_allclose(rec.trials[1].data, truth[1], atol=1e-12)


def test_unknown_clip_annotation_is_named(corpus, tmp_path):
    raw, _ = _raw(corpus, descriptions=[corpus[0].id, "no_such_clip", corpus[2].id])
    raw.save(tmp_path / "sub-01_eeg.fif", verbose="error")
    with pytest.raises(ValueError, match=r"sub-01_eeg.fif.*'no_such_clip' is not a clip id"):
        read_recording(tmp_path / "sub-01_eeg.fif", corpus)


def test_bad_annotations_are_ignored(corpus, tmp_path):
    import mne

    raw, _ = _raw(corpus)
    raw.set_annotations(raw.annotations + mne.Annotations([0.1], [0.1], ["BAD_muscle"]))
    raw.save(tmp_path / "sub-01_eeg.fif", verbose="error")
    assert len(read_recording(tmp_path / "sub-01_eeg.fif", corpus).trials) == 3


def test_recording_shorter_than_its_stimulus(corpus, tmp_path):
    raw, _ = _raw(corpus, gap_s=0.5)
    raw.crop(tmax=raw.times[-1] - 1.0)  # the last clip runs past the end
    raw.save(tmp_path / "sub-01_eeg.fif", verbose="error")
    with pytest.raises(ValueError, match=r"trial 2 \(clip 'clip02'.*recording is"):
        read_recording(tmp_path / "sub-01_eeg.fif", corpus)


def test_missing_file_and_unknown_format(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fif"):
        read_recording(tmp_path / "nope.fif", corpus)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="unknown recording format"):
        read_recording(tmp_path / "x.txt", corpus)


def _cnd(corpus, path, fs=SFREQ, seed=0):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    trials = [rng.normal(size=(int(round(c.duration_s * SFREQ)), 5)) for c in corpus]
    cell = np.empty(len(trials), dtype=object)
    cell[:] = trials
    savemat(path, {"eeg": {"data": cell, "fs": fs, "dataType": "EEG"}})
    return trials


def test_cnd_round_trip(corpus, tmp_path):
    trials = _cnd(corpus, tmp_path / "dataSub1.mat")
    rec = read_recording(tmp_path / "dataSub1.mat", corpus)
    assert [t.clip_id for t in rec.trials] == [c.id for c in corpus] and rec.sfreq == SFREQ
    for t, want in zip(rec.trials, trials):
        np.testing.assert_allclose(t.data, want)
    rec = read_recording(tmp_path / "dataSub1.mat", corpus, clip_ids=[corpus[0].id] * 3)
    assert {t.clip_id for t in rec.trials} == {corpus[0].id}


def test_cnd_sampling_rate_mismatch_is_named(corpus, tmp_path):
    _cnd(corpus, tmp_path / "dataSub1.mat", fs=128.0)  # data at 100 Hz, header says 128 Hz
    with pytest.raises(ValueError, match=r"dataSub1.mat: trial 0 \(clip 'clip00'\).*sampling-rate mismatch"):
        read_recording(tmp_path / "dataSub1.mat", corpus)


def test_from_arrays_unknown_clip_and_naplib_like_data(corpus):
    arrays = [np.zeros((int(c.duration_s * SFREQ), 2)) for c in corpus]
    with pytest.raises(ValueError, match=r"trial 1: 'zzz' is not a clip id"):
        from_arrays(arrays, [corpus[0].id, "zzz", corpus[2].id], SFREQ, corpus)
    data = [{"name": c.id, "resp": a + i, "dataf": SFREQ, "chname": ["a", "b"]} for i, (c, a) in enumerate(zip(corpus, arrays))]
    rec = from_naplib_data(data, corpus)
    assert rec.ch_names == ["a", "b"] and rec.trials[2].data[0, 0] == 2
