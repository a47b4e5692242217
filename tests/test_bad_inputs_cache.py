"""Bad input, part 2: damaged activation caches are found, named and repaired; bad cache requests refused.

The caches are real (``workbench cache --model cochleagram`` over three espeak clips, written
in one batch per clip so the merged file holds several clips); each test damages a copy.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_bad_inputs import assert_error, cli, synth, tree_hash  # noqa: F401  (synth is a fixture)
from workbench.cache import ActivationCache, CacheDamagedError

pytestmark = pytest.mark.usefixtures("one_thread")

HOOKS = ["cochleagram.hook_envelope", "cochleagram.hook_out"]
ACTS = "hooks/cochleagram.hook_out/acts_g0001.bin"


def _cache_argv(corpus: Path, out: Path, *extra) -> list:
    return ["cache", "--model", "cochleagram", "--corpus", corpus, "--hooks", *HOOKS, "--out", out,
            "--batch-seconds", "0.5", "--quiet", *extra]


@pytest.fixture(scope="module")
def fresh(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fresh") / "cache"
    from workbench.cli import main

    assert main([str(a) for a in _cache_argv(synth, out)]) == 0
    return out


@pytest.fixture
def damaged(fresh, tmp_path) -> Path:
    """A private copy of the fresh cache, for a test to damage."""
    return Path(shutil.copytree(fresh, tmp_path / "cache"))


def _same_data(a: Path, b: Path) -> None:
    ca, cb = ActivationCache.open(a, verify=True), ActivationCache.open(b, verify=True)
    assert ca.clip_ids == cb.clip_ids
    for h in HOOKS:
        np.testing.assert_array_equal(np.asarray(ca.acts(h)), np.asarray(cb.acts(h)))
    assert ca.frames().equals(cb.frames())


def test_shards_are_recorded_with_size_and_checksum(fresh):
    index = json.loads((fresh / "index.json").read_text())
    for entry in [*index["final"]["hooks"].values(), *index["final"]["frames"].values()]:
        assert (fresh / entry["file"]).stat().st_size == entry["bytes"]
        assert len(entry["sha256"]) == 64


@pytest.mark.parametrize("damage", ["truncate", "delete", "empty"])
def test_truncated_or_deleted_shard_is_named_and_a_rerun_repairs_it(capsys, synth, fresh, damaged, damage):
    path = damaged / ACTS
    size = path.stat().st_size
    if damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(size * 2 // 3)  # the last clip (and part of the one before) lost
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(b"")
    rc, out, err = cli(capsys, "cache-info", damaged)
    assert_error(rc, err, ACTS, "damaged", "rerun `workbench cache`")
    assert "complete=True" not in out
    with pytest.raises(CacheDamagedError, match=ACTS):  # every reader goes through open()
        ActivationCache.open(damaged)
    rc, _, err = cli(capsys, *_cache_argv(synth, damaged))
    assert rc == 0, err
    _same_data(damaged, fresh)  # the damaged clips were cached again, frame for frame
    rc, out, err = cli(capsys, "cache-info", damaged, "--verify")
    assert rc == 0 and "complete=True" in out


def test_flipped_byte_is_found_by_verify_and_repaired_by_cache_verify(capsys, synth, fresh, damaged):
    path = damaged / "hooks/cochleagram.hook_envelope/acts_g0001.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    rc, out, _ = cli(capsys, "cache-info", damaged)  # sizes are fine: the cheap check cannot see it
    assert rc == 0
    rc, _, err = cli(capsys, "cache-info", damaged, "--verify")
    assert_error(rc, err, "hooks/cochleagram.hook_envelope/acts_g0001.bin", "checksum mismatch")
    rc, _, err = cli(capsys, *_cache_argv(synth, damaged, "--verify"))
    assert rc == 0, err
    _same_data(damaged, fresh)


def test_damaged_frame_table_is_named(capsys, damaged):
    index = json.loads((damaged / "index.json").read_text())
    part = index["final"]["frames"]["g0"]["file"]
    with open(damaged / part, "r+b") as f:
        f.truncate(100)
    rc, _, err = cli(capsys, "cache-info", damaged)
    assert_error(rc, err, part, "truncated")


def test_readers_fail_naming_the_shard(capsys, damaged, tmp_path):
    with open(damaged / ACTS, "r+b") as f:
        f.truncate(1000)
    before = tree_hash(damaged)
    rc, _, err = cli(capsys, "probe", "--cache", damaged, "--target", "phones", "--split", "clip", "--folds", "2",
                     "--out", tmp_path / "probe")
    assert_error(rc, err, ACTS)
    rc, _, err = cli(capsys, "sae", "train", "--cache", damaged, "--hook", HOOKS[1], "--tokens", "1000",
                     "--out", tmp_path / "sae")
    assert_error(rc, err, ACTS)
    assert tree_hash(damaged) == before
    assert not (tmp_path / "probe").exists() and not (tmp_path / "sae").exists()


@pytest.mark.parametrize("name", ["index.json", "cache.json"])
def test_broken_json_in_a_cache_names_the_file(capsys, damaged, name):
    (damaged / name).write_text('{"format": 1, "final": {')
    rc, _, err = cli(capsys, "cache-info", damaged)
    assert_error(rc, err, str(damaged / name), "not valid JSON")


def test_not_a_cache(capsys, tmp_path):
    rc, _, err = cli(capsys, "cache-info", tmp_path)
    assert_error(rc, err, str(tmp_path), "not an activation cache")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    rc, _, err = cli(capsys, "cache-info", f)
    assert_error(rc, err, str(f))


def test_all_clips_unreadable_is_not_a_complete_empty_cache(capsys, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.flac").write_bytes(b"\x00" * 64)
    (src / "manifest.jsonl").write_text(json.dumps({"path": "bad.flac", "id": "bad"}) + "\n")
    out = tmp_path / "cache"
    rc, _, err = cli(capsys, *_cache_argv(src / "manifest.jsonl", out))
    assert_error(rc, err, "no clip could be cached", "bad", "errors.jsonl")


def test_rerun_with_other_hooks_or_into_a_foreign_folder_changes_nothing(capsys, synth, damaged, tmp_path):
    before = tree_hash(damaged)
    rc, _, err = cli(capsys, "cache", "--model", "cochleagram", "--corpus", synth, "--hooks", HOOKS[0],
                     "--out", damaged, "--quiet")
    assert_error(rc, err, "refusing to append", "hooks")
    assert tree_hash(damaged) == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious\n")
    before = tree_hash(foreign)
    rc, _, err = cli(capsys, *_cache_argv(synth, foreign))
    assert_error(rc, err, str(foreign), "not an activation cache")
    assert tree_hash(foreign) == before  # not even a lock file left behind


def test_damaged_uncommitted_batch_is_dropped_and_redone(capsys, caplog, synth, fresh, damaged):
    """A batch written by an interrupted build (a piece, not merged yet) with a truncated shard."""
    index = json.loads((damaged / "index.json").read_text())
    piece = {"rank": 0, "run": "killed", "seq": 0, "failed": {}, **index["final"]}
    (damaged / "index.json").write_text(json.dumps({**index, "final": None, "pieces": [piece]}))
    with open(damaged / ACTS, "r+b") as f:
        f.truncate(10)
    rc, _, err = cli(capsys, *_cache_argv(synth, damaged))
    assert rc == 0, err
    assert f"dropping damaged batch r0_killed_00000 ({ACTS}: truncated" in caplog.text
    _same_data(damaged, fresh)


def test_frame_table_damaged_in_place_is_named_by_readers(capsys, damaged, tmp_path):
    """Same size, garbage inside: the cheap size check passes, reading the table names the file."""
    part = json.loads((damaged / "index.json").read_text())["final"]["frames"]["g0"]["file"]
    data = bytearray((damaged / part).read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    data[-8:-4] = b"\xff\xff\xff\x7f"  # the footer length: unreadable for certain
    (damaged / part).write_bytes(bytes(data))
    rc, _, err = cli(capsys, "probe", "--cache", damaged, "--target", "phones", "--split", "clip", "--folds", "2",
                     "--out", tmp_path / "probe")
    assert_error(rc, err, part, "unreadable frame table")
    rc, _, err = cli(capsys, "cache-info", damaged, "--verify")
    assert_error(rc, err, part, "checksum mismatch")


def test_damaged_corpus_record_names_file_and_line(damaged):
    path = damaged / "corpus.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=f"{path}:2: damaged corpus record"):
        _ = ActivationCache.open(damaged).corpus
