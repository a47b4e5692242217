"""Bad input, part 4: the steering, neuro and app inputs (an artifact for another model, a
recording whose stimuli are missing, an uploaded file that is not audio).

Same three checks as the other bad-input modules: exit code (or exception), the message names
the input, and existing outputs are unchanged.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from test_bad_inputs import assert_error, cli, synth, tree_hash  # noqa: F401  (synth is a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


# --- steering artifacts -------------------------------------------------------------------------
def _direction_artifact(folder: Path, model: str, d_model: int, hook: str = "encoder.blocks.3.hook_resid_post") -> Path:
    from workbench.steering import Steering

    Steering(model=model, hook=hook, d_model=d_model, method="direction", edit="subtract", strength=1.0,
             direction=[1.0] + [0.0] * (d_model - 1)).save(folder)
    return folder


def _no_model_load(monkeypatch):
    import workbench.models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(workbench.models, "load", refuse)


def test_steering_artifact_for_another_model_is_refused(capsys, tmp_path, shared_data, monkeypatch):
    art = _direction_artifact(tmp_path / "steer_base", "whisper-base", 512)
    before = tree_hash(art)
    _no_model_load(monkeypatch)  # the artifact names its model: no load needed to refuse it
    rc, out, err = cli(capsys, "models", "transcribe", "whisper-tiny.en", shared_data / "speech" / "jfk.flac",
                       "--steering", art)
    assert_error(rc, err, str(art), "whisper-base")
    assert out == ""  # not even the plain transcript: nothing is half-done
    assert tree_hash(art) == before


def test_damaged_steering_artifact_is_named_before_the_model_load(capsys, tmp_path, monkeypatch, shared_data):
    art = _direction_artifact(tmp_path / "steer", "whisper-tiny.en", 384)
    (art / "steering.json").write_text('{"format": "workbench.steering/1", "model": ')
    _no_model_load(monkeypatch)
    rc, _, err = cli(capsys, "models", "transcribe", "whisper-tiny.en", shared_data / "speech" / "jfk.flac",
                     "--steering", art)
    assert_error(rc, err, str(art / "steering.json"), "JSON")
    rc, _, err = cli(capsys, "models", "transcribe", "whisper-tiny.en", shared_data / "speech" / "jfk.flac",
                     "--steering", tmp_path / "nowhere")
    assert_error(rc, err, "nowhere", "steering")


# --- neuro: recordings ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recording(synth, tmp_path_factory) -> Path:
    """A simulated EEG FIF whose trials are the synth clips."""
    from workbench.cli import main

    out = tmp_path_factory.mktemp("eeg") / "sub-sim_eeg.fif"
    assert main(["neuro", "simulate", "--corpus", str(synth), "--out", str(out), "--plant", "envelope"]) == 0
    return out


def test_recording_whose_stimuli_are_not_in_the_corpus(capsys, tmp_path, recording, synth):
    rows = [json.loads(line) for line in (synth / "manifest.jsonl").read_text().splitlines()]
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.jsonl").write_text(json.dumps({**rows[0], "id": "someone_else",
                                                      "path": str(synth / rows[0]["path"])}) + "\n")
    out = tmp_path / "fit"
    rc, _, err = cli(capsys, "neuro", "fit", "--recording", recording, "--corpus", other, "--out", out, "--quiet",
                     "--draws", "10", "--folds", "2")
    assert_error(rc, err, str(recording), rows[0]["id"], str(other))
    assert not out.exists() or tree_hash(out) == {}


def test_recording_whose_stimulus_audio_is_missing(capsys, tmp_path, recording, synth):
    rows = [json.loads(line) for line in (synth / "manifest.jsonl").read_text().splitlines()]
    moved = tmp_path / "corpus"
    moved.mkdir()
    rows[1]["path"] = "audio/deleted.flac"
    (moved / "manifest.jsonl").write_text("".join(json.dumps({**r, "path": str(synth / r["path"])}
                                                             if r is not rows[1] else r) + "\n" for r in rows))
    out = tmp_path / "fit"
    rc, _, err = cli(capsys, "neuro", "fit", "--recording", recording, "--corpus", moved, "--out", out, "--quiet",
                     "--draws", "10", "--folds", "2")
    assert_error(rc, err, "deleted.flac")


def test_recording_that_is_not_a_recording(capsys, tmp_path, synth):
    fake = tmp_path / "sub-x_eeg.fif"
    fake.write_bytes(b"not a FIF file at all")
    rc, _, err = cli(capsys, "neuro", "fit", "--recording", fake, "--corpus", synth, "--out", tmp_path / "fit",
                     "--quiet")
    assert_error(rc, err, str(fake))
    assert not (tmp_path / "fit").exists()


# --- app: uploads -------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload,name", [(b"just some notes\n", "notes.wav"), (b"\x00\x01\x02" * 50, "noise.mp3"),
                                          (b"", "empty.flac")])
def test_uploaded_file_that_is_not_audio_names_the_upload(payload, name):
    from apps.live import decode_upload

    contents = "data:audio/wav;base64," + base64.b64encode(payload).decode()
    with pytest.raises(ValueError) as e:
        decode_upload(contents, name)
    assert name in str(e.value)


def test_upload_that_is_not_a_data_url():
    from apps.live import decode_upload

    with pytest.raises(ValueError, match="clip.wav"):
        decode_upload("no comma here", "clip.wav")


# --- argument types of the neuro and steer commands ---------------------------------------------------
@pytest.mark.parametrize("argv,arg,value", [
    (["neuro", "fit", "--recording", "R", "--corpus", "C", "--out", "OUT"], "--folds", "0"),
    (["neuro", "fit", "--recording", "R", "--corpus", "C", "--out", "OUT"], "--sfreq", "-100"),
    (["neuro", "fit", "--recording", "R", "--corpus", "C", "--out", "OUT"], "--n-components", "x"),
    (["neuro", "simulate", "--corpus", "C", "--out", "OUT"], "--sfreq", "0"),
    (["neuro", "simulate", "--corpus", "C", "--out", "OUT"], "--lag", "-0.1"),
    (["steer", "prepare", "C", "--out", "OUT"], "--seconds", "-1"),
    (["steer", "fit", "--cache", "C", "--corpus", "C", "--out", "OUT"], "--permutations", "0"),
    (["steer", "fit", "--cache", "C", "--corpus", "C", "--out", "OUT"], "--max-wer-increase", "-0.1"),
    (["steer", "eval", "--steering", "C", "--corpus", "C", "--out", "OUT"], "--max-clips", "0"),
])
def test_neuro_and_steer_arguments_are_typed(capsys, tmp_path, argv, arg, value):
    out = tmp_path / "out"
    argv = [str(tmp_path) if a in ("R", "C") else str(out) if a == "OUT" else a for a in argv]
    rc, _, err = cli(capsys, *argv, arg, value)
    assert_error(rc, err, f"argument {arg}", value)
    assert not out.exists()


@pytest.mark.parametrize("r", ["5", "1", "-0.2"])
def test_simulated_recording_with_an_impossible_correlation_is_refused(capsys, tmp_path, synth, r):
    out = tmp_path / "sim" / "sub-x_eeg.fif"
    rc, _, err = cli(capsys, "neuro", "simulate", "--corpus", synth, "--out", out, "--r", r)
    assert_error(rc, err, "--r", r)
    assert not out.exists()  # it used to write NaN channels without a word


def test_steer_fit_n_features_must_be_whole_counts(capsys, tmp_path):
    rc, _, err = cli(capsys, "steer", "fit", "--cache", tmp_path, "--corpus", tmp_path, "--out", tmp_path / "o",
                     "--n-features", "1.5,4")
    assert_error(rc, err, "argument --n-features", "1.5")


@pytest.mark.parametrize("argv,named", [
    (["--port", "99999"], "argument --port"),  # was an AssertionError traceback from the server
    (["--port", "http"], "argument --port"),
])
def test_app_arguments(capsys, tmp_path, argv, named):
    rc, _, err = cli(capsys, "app", tmp_path, *argv)
    assert_error(rc, err, named, argv[-1])


def test_app_workspace_that_is_not_a_folder(capsys, tmp_path):
    f = tmp_path / "ws.txt"
    f.write_text("x")
    rc, _, err = cli(capsys, "app", f)
    assert_error(rc, err, str(f), "not a directory")
