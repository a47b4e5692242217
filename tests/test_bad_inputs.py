"""Bad input, part 1: argument types, corpora (manifests, TextGrids, alignment) and audio.

Every case runs the real CLI in-process (``workbench.cli.main``) and asserts three things:
the exit code, that the message names the bad file or argument, and that outputs already on
disk are unchanged (a hash of the folder before and after). The other ``test_bad_inputs_*``
modules cover caches, SAEs/probes/models and the steering/neuro/app inputs; the helpers here
are shared with them.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workbench.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


# --- helpers shared with the other bad-input modules ----------------------------------------------
def tree_hash(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` ({} if absent): "nothing changed" checks."""
    root = Path(root)
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``workbench ARGV`` in-process: ``(exit code, stdout, stderr)`` (argparse exits become codes)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: usage errors exit 2
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error(rc: int, err: str, *names: str, code: int = 2) -> None:
    """Exit ``code``, one clear message (no traceback) that mentions every one of ``names``."""
    assert rc == code, err
    assert "Traceback" not in err, err
    for n in names:
        assert str(n) in err, f"{n!r} not named in: {err}"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """Three espeak clips with exact tiers (manifest.jsonl in the folder)."""
    from workbench.corpus.synth import synth_corpus

    root = tmp_path_factory.mktemp("synth")
    synth_corpus(3, root, seed=0, n_speakers=2, verbose=False)
    return root


# --- argument types: checked by argparse before any work -------------------------------------------
_BASE = {
    "synth": ["corpus", "synth", "--out", "OUT"],
    "cache": ["cache", "--model", "cochleagram", "--corpus", "DIR", "--hooks", "x", "--out", "OUT"],
    "probe": ["probe", "--cache", "DIR", "--target", "phones", "--out", "OUT"],
    "train": ["sae", "train", "--cache", "DIR", "--hook", "x", "--out", "OUT"],
    "eval": ["sae", "eval", "--sae", "DIR", "--cache", "DIR", "--out", "OUT"],
}


@pytest.mark.parametrize("cmd,extra", [
    ("synth", ["--n", "0"]), ("synth", ["--n", "-3"]), ("synth", ["--speakers", "two"]),
    ("cache", ["--max-clips", "-1"]), ("cache", ["--max-clips", "0"]), ("cache", ["--batch-seconds", "nan"]),
    ("cache", ["--batch-seconds", "0"]),
    ("probe", ["--max-frames", "0"]), ("probe", ["--target", "words:abc"]), ("probe", ["--target", "words:0"]),
    ("probe", ["--target", "speaker:3"]), ("probe", ["--topk", "1,a"]), ("probe", ["--topk", "1,-4"]),
    ("probe", ["--folds", "1"]), ("probe", ["--C", "-1"]),
    ("train", ["--k", "0"]), ("train", ["--tokens", "1e6x"]), ("train", ["--holdout-clips", "1.5"]),
    ("eval", ["--splice-clips", "-1"]), ("eval", ["--max-frames", "0"]),
])
def test_bad_argument_values_are_refused_by_argparse(capsys, tmp_path, cmd, extra):
    out = tmp_path / "out"
    argv = [str(tmp_path) if a == "DIR" else str(out) if a == "OUT" else a for a in _BASE[cmd] + extra]
    rc, _, err = cli(capsys, *argv)
    assert_error(rc, err, f"argument {extra[0]}", extra[1])
    assert not out.exists()


def test_device_cuda_on_a_cpu_torch_says_how_to_get_one(capsys, tmp_path, synth):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc, _, err = cli(capsys, "models", "info", "cochleagram", "--device", "cuda")
    assert_error(rc, err, "--device", "no CUDA", "pip install torch")
    rc, _, err = cli(capsys, "cache", "--model", "cochleagram", "--corpus", synth, "--hooks", "x",
                     "--out", tmp_path / "c", "--device", "cuda:0")
    assert_error(rc, err, "--device", "no CUDA")
    assert not (tmp_path / "c").exists()
    rc, _, err = cli(capsys, "models", "info", "cochleagram", "--device", "gpu0")
    assert_error(rc, err, "--device", "gpu0")


@pytest.mark.parametrize("argv", [
    ["corpus", "synth", "--n", "1"],
    ["corpus", "build", "SYNTH"],
    ["cache", "--model", "cochleagram", "--corpus", "SYNTH", "--hooks", "cochleagram.hook_out"],
])
def test_out_that_is_an_existing_file(capsys, tmp_path, synth, argv):
    target = tmp_path / "taken.txt"
    target.write_text("keep me\n")
    rc, _, err = cli(capsys, *[str(synth) if a == "SYNTH" else a for a in argv], "--out", target)
    assert_error(rc, err, str(target), "existing file")
    assert target.read_text() == "keep me\n"


# --- manifests --------------------------------------------------------------------------------------
def _manifest(root: Path, rows: list) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    p = root / "manifest.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def test_malformed_inline_tiers_name_file_and_line_and_are_skipped(capsys, tmp_path, synth):
    audio = str(synth / "audio" / sorted(p.name for p in (synth / "audio").iterdir())[0])
    src = _manifest(tmp_path / "src", [
        {"path": audio, "id": "good"},
        {"path": audio, "id": "short_entry", "tiers": {"phones": [[0, 0.1]]}},
        {"path": audio, "id": "not_a_list", "tiers": {"words": 5}},
        {"path": audio, "id": "backwards", "tiers": {"words": [[0.5, 0.2, "hi"]]}},
        "{not json",
        {"path": audio, "id": "bad_duration", "duration_s": "abc"},
    ])
    out = tmp_path / "out"
    rc, text, err = cli(capsys, "corpus", "build", src, "--out", out, "-q")
    assert rc == 0, err
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["path"] for e in errors) == [f"{src}:{i}" for i in (2, 3, 4, 5, 6)]
    assert "'duration_s' must be a number" in errors[-1]["error"]
    assert all(e["action"] == "skipped" for e in errors)
    assert "entry 0" in errors[0]["error"] and "[start_s, end_s, label]" in errors[0]["error"]
    kept = [json.loads(line)["id"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert kept == ["good"]
    before = tree_hash(out)
    rc, _, err = cli(capsys, "corpus", "build", src, "--out", out, "--strict", "-q")
    assert_error(rc, err, f"{src}:2", "tier 'phones'")
    assert tree_hash(out) == before


def test_empty_manifest_is_refused_everywhere(capsys, tmp_path, monkeypatch):
    empty = _manifest(tmp_path / "empty", [])
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "corpus", "build", empty, "--out", out, "-q")
    assert_error(rc, err, str(empty), "no clips")
    assert not out.exists()
    rc, _, err = cli(capsys, "corpus", "info", empty)
    assert rc == 0 and "holds no clips" in err

    import workbench.models

    def no_model(*a, **k):  # validation that needs no model must come before the model load
        raise AssertionError("the model was loaded before the corpus was checked")

    monkeypatch.setattr(workbench.models, "load", no_model)
    rc, _, err = cli(capsys, "cache", "--model", "whisper-tiny.en", "--corpus", empty, "--hooks", "x", "--out", out)
    assert_error(rc, err, "--corpus", str(empty), "no clips")
    assert not out.exists()


def test_corpus_info_warns_about_missing_audio(capsys, tmp_path, synth):
    rows = [json.loads(line) for line in (synth / "manifest.jsonl").read_text().splitlines()]
    rows[1]["path"] = "audio/gone.flac"
    src = _manifest(tmp_path / "m", [{**r, "path": str(synth / r["path"])} if r["path"] != "audio/gone.flac" else r
                                     for r in rows])
    rc, _, err = cli(capsys, "corpus", "info", src)
    assert rc == 0
    assert "1 of 3 clips have no audio file" in err and "gone.flac" in err


def test_missing_source_and_unparseable_manifest_rows(capsys, tmp_path):
    rc, _, err = cli(capsys, "corpus", "build", tmp_path / "nope.jsonl", "--out", tmp_path / "o")
    assert_error(rc, err, "nope.jsonl")
    src = _manifest(tmp_path / "s", ['{"id": "x"}'])
    rc, _, err = cli(capsys, "corpus", "build", src, "--out", tmp_path / "o", "--strict")
    assert_error(rc, err, f"{src}:1", "no 'path'")
    assert not (tmp_path / "o").exists()


def test_every_clip_unreadable_builds_nothing(capsys, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.wav").write_text("this is not audio\n")
    src = _manifest(tmp_path / "s", [{"path": "notes.wav"}])
    rc, _, err = cli(capsys, "corpus", "build", src, "--out", tmp_path / "o", "-q")
    assert_error(rc, err, "notes.wav", "text file")
    assert not (tmp_path / "o").exists()


# --- TextGrids --------------------------------------------------------------------------------------
_TG = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = {xmax}
tiers? <exists>
size = 1
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = {xmax}
        intervals: size = 2
        intervals [1]:
            xmin = {start}
            xmax = 1
            text = "hello"
        intervals [2]:
            xmin = 1
            xmax = {xmax}
            text = "world"
"""


def _tone(path: Path, seconds: float) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


def test_textgrid_of_another_longer_file_is_refused_naming_both(capsys, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    audio = _tone(src / "short.wav", 1.36)
    (src / "long.TextGrid").write_text(_TG.format(xmax=26.0, start=0))
    m = _manifest(src, [{"path": "short.wav", "alignment": "long.TextGrid"}])
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "corpus", "build", m, "--out", out, "-q")
    assert rc == 0, err
    row = json.loads((out / "manifest.jsonl").read_text())
    assert "tiers" not in row  # kept, but without the other file's labels
    (problem,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert "long.TextGrid" in problem["error"] and "short.wav" in problem["error"]
    assert problem["action"] == "kept clip without tiers"
    before = tree_hash(out)
    rc, _, err = cli(capsys, "corpus", "build", m, "--out", out, "--strict", "-q")
    assert_error(rc, err, "long.TextGrid", str(audio), "26.000", "1.360")
    assert tree_hash(out) == before


def test_textgrid_of_another_shorter_file_found_in_a_folder_tree(capsys, tmp_path):
    src = tmp_path / "tree" / "speech"
    src.mkdir(parents=True)
    _tone(src / "a.wav", 12.0)
    (src / "a.TextGrid").write_text(_TG.format(xmax=2.0, start=0))  # someone else's 2 s TextGrid
    rc, _, err = cli(capsys, "corpus", "build", tmp_path / "tree", "--out", tmp_path / "out", "--strict", "-q")
    assert_error(rc, err, "a.TextGrid", "a.wav", "shorter")


def test_negative_time_in_textgrid_is_reported_as_negative(capsys, tmp_path):
    src = tmp_path / "tree" / "speech"
    src.mkdir(parents=True)
    _tone(src / "a.wav", 2.0)
    tg = src / "a.TextGrid"
    tg.write_text(_TG.format(xmax=2.0, start=-0.5))
    rc, _, err = cli(capsys, "corpus", "build", tmp_path / "tree", "--out", tmp_path / "out", "--strict", "-q")
    assert_error(rc, err, f"{tg}:16", "negative time -0.5")


@pytest.mark.parametrize("transcript", [
    "the quick brown fox jumps over the lazy dog while purple elephants dance in space",  # scores far too low
    "hello",  # parks the rest of the speech in silence models: spans too little of it
])
def test_align_with_a_nonsense_transcript_does_not_claim_success(capsys, tmp_path, shared_data, transcript):
    src = _manifest(tmp_path / "src", [
        {"path": str(shared_data / "speech" / "jfk.flac"), "id": "nonsense", "transcript": transcript},
    ])
    out = tmp_path / "out"
    rc, text, err = cli(capsys, "corpus", "build", src, "--out", out, "--align", "--json", "-q")
    assert rc == 0, err
    assert json.loads(text)["aligned"] == 0
    (problem,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert problem["stage"] == "align" and "does not fit the audio" in problem["error"]
    assert "jfk.flac" in problem["error"]
    assert "tiers" not in json.loads((out / "manifest.jsonl").read_text())


# --- audio -------------------------------------------------------------------------------------------
def test_float_audio_beyond_full_scale_is_scaled_with_a_warning(tmp_path, capsys):
    from workbench.audio import FullScaleWarning, iter_audio_chunks, load_audio

    t = np.arange(16000 * 2) / 16000
    loud = tmp_path / "loud.wav"
    sf.write(loud, (783.0 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000, subtype="FLOAT")
    with pytest.warns(FullScaleWarning, match=r"loud\.wav.*783"):
        x = load_audio(loud, sr=16000)
    assert 0.99 < np.abs(x).max() <= 1.0001
    with pytest.warns(FullScaleWarning):
        chunks = np.concatenate(list(iter_audio_chunks(loud, chunk_s=0.3, sr=16000)))
    np.testing.assert_allclose(chunks, x, atol=1e-6)  # chunked reading scales the same way
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in range: not a word
        load_audio(_tone(tmp_path / "ok.wav", 0.5))

    src = _manifest(tmp_path / "src", [{"path": str(loud)}])
    rc, _, err = cli(capsys, "corpus", "build", src, "--out", tmp_path / "out", "-q")
    assert rc == 0
    (problem,) = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert "beyond full scale" in problem["error"] and problem["action"] == "kept"


def test_transcribing_far_beyond_full_scale_audio_gives_the_real_transcript(tmp_path, shared_data, tiny_en_wheel):
    from workbench.audio import FullScaleWarning, load_audio
    from workbench.models import load

    x = load_audio(shared_data / "speech" / "jfk.flac", sr=16000)
    loud = tmp_path / "jfk_loud.wav"
    sf.write(loud, x * (783.0 / np.abs(x).max()), 16000, subtype="FLOAT")
    model = load("whisper-tiny.en")
    with pytest.warns(FullScaleWarning):
        y = load_audio(loud, sr=16000)
    assert model.transcribe(y).strip().startswith("And so my fellow Americans")


def test_transcribe_a_text_file_before_the_model_load(capsys, tmp_path, monkeypatch):
    import workbench.models

    monkeypatch.setattr(workbench.models, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    rc, _, err = cli(capsys, "models", "transcribe", "whisper-tiny.en", tmp_path / "missing.wav")
    assert_error(rc, err, "missing.wav")


def test_read_json_names_the_damaged_file(tmp_path):
    from workbench.atomic import JSONFileError, read_json

    for name, content in [("empty.json", ""), ("cut.json", '{"a": [1, 2'), ("bin.json", b"\xff\xfe\x00{")]:
        p = tmp_path / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(JSONFileError, match=str(p)):
            read_json(p)
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        read_json(tmp_path / "nothere.json")


def test_the_installed_command_prints_one_line_and_exits_2(tmp_path):
    """Through a real process (the entry point, logging set up by it): one line, status 2, no traceback."""
    import subprocess
    import sys

    empty = _manifest(tmp_path / "empty", [])
    proc = subprocess.run([sys.executable, "-m", "workbench", "corpus", "build", str(empty), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith("workbench corpus: error: ") and str(empty) in proc.stderr
    assert not (tmp_path / "out").exists()
