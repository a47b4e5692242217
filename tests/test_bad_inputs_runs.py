"""Bad input, part 6: artifact folders (issue 22, cases 3, 4 and 8).

- Two runs into one ``--out``: the second refuses, naming the holder (pid, command, lock file),
  before writing anything (``sae train`` had no lock: the folder mixed two runs).
- ``sae train --resume`` with another ``--cache`` refuses, naming the differing input
  (it trained on both datasets and recorded only the second).
- An incomplete cache (``complete=false``) is refused by ``probe`` and ``sae train`` unless
  ``--allow-incomplete``, which is recorded in ``OUT/inputs.json``; ``cache-info`` tells a build
  that is still running from an interrupted one.
- :func:`workbench.atomic.artifact_dir`: a failed run leaves the old folder byte for byte.

Caches are the deterministic cochleagram over three espeak clips (``fresh``, shared with
``test_bad_inputs_cache``); each test damages or edits a private copy.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_inputs import assert_error, cli, synth, tree_hash  # noqa: F401  (synth is a fixture)
from test_bad_inputs_cache import HOOKS, fresh  # noqa: F401  (fresh is a fixture)

from workbench.atomic import INPUTS_JSON, InputsMismatchError, artifact_dir, write_json
from workbench.lock import DirectoryLock, LockedError, lock_holder

pytestmark = pytest.mark.usefixtures("one_thread")
TRAIN = ["--hook", HOOKS[1], "--tokens", "1024", "--batch-size", "256", "--quiet"]


def _hold(lock_path: Path, command: str = "workbench sae train --out elsewhere"):
    """Another process that holds ``lock_path`` (as a running build would) until killed."""
    code = ("import sys, time; from workbench.lock import DirectoryLock; "
            "DirectoryLock(sys.argv[1], command=sys.argv[2]).acquire(); print('held', flush=True); time.sleep(300)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(lock_path), command], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _release(proc) -> None:
    proc.kill()
    proc.wait()


def _incomplete(cache: Path, tmp_path: Path) -> Path:
    """A copy of ``cache`` whose build did not finish (complete=false, as after Ctrl-C)."""
    copy = Path(shutil.copytree(cache, tmp_path / "partial"))
    meta = json.loads((copy / "cache.json").read_text())
    meta["complete"] = False
    (copy / "cache.json").write_text(json.dumps(meta))
    return copy


# --- the mechanism ------------------------------------------------------------------------------------
def test_artifact_dir_failure_leaves_the_old_folder_and_nothing_beside_it(tmp_path):
    out = tmp_path / "run"
    with artifact_dir(out, {"cache_fingerprint": "a"}) as tmp:
        assert tmp != out and tmp.parent == tmp_path and not out.exists()  # invisible until complete
        write_json(tmp / "result.json", {"r": 1})
    before = tree_hash(tmp_path)
    assert json.loads((out / INPUTS_JSON).read_text())["inputs"] == {"cache_fingerprint": "a"}
    with pytest.raises(RuntimeError, match="boom"), artifact_dir(out, {"cache_fingerprint": "b"}) as tmp:
        write_json(tmp / "result.json", {"r": 2})
        raise RuntimeError("boom")
    assert tree_hash(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["run"]  # no temp, no lock left
    with artifact_dir(out, {"cache_fingerprint": "b"}) as tmp:
        write_json(tmp / "other.json", {})
    assert sorted(os.listdir(out)) == ["inputs.json", "other.json"]  # replaced whole, not merged


def test_artifact_dir_refuses_a_second_writer_and_other_inputs(tmp_path):
    out = tmp_path / "run"
    with artifact_dir(out, {"x": 1}, resumable=True) as d:
        assert d == out
        with pytest.raises(LockedError, match=rf"pid {os.getpid()} .*\.run\.lock"), artifact_dir(out):
            pass
        assert lock_holder(tmp_path / ".run.lock")["pid"] == os.getpid()
    assert lock_holder(tmp_path / ".run.lock") is None
    with pytest.raises(InputsMismatchError, match=r"x: recorded 1, now 2"), artifact_dir(out, {"x": 2}, resumable=True):
        pass
    with artifact_dir(out, {"x": 2}, resumable=True, check_inputs=False):  # a fresh start may replace them
        pass


def test_lock_left_by_a_killed_process_does_not_block(tmp_path):
    holder = _hold(tmp_path / ".x.lock")
    assert lock_holder(tmp_path / ".x.lock")["pid"] == holder.pid
    _release(holder)
    assert lock_holder(tmp_path / ".x.lock") is None
    with DirectoryLock(tmp_path / ".x.lock"):
        pass


# --- case 3: two sae train runs into one --out --------------------------------------------------------
def test_second_sae_train_into_the_same_out_refuses(capsys, tmp_path, fresh):
    out = tmp_path / "saes" / "run"
    holder = _hold(tmp_path / "saes" / ".run.lock", "workbench sae train --out saes/run (the first)")
    try:
        rc, _, err = cli(capsys, "sae", "train", "--cache", fresh, *TRAIN, "--out", out)
        assert_error(rc, err, "another run is writing", str(out), f"pid {holder.pid}", "the first", ".run.lock")
        assert not out.exists()  # refused before anything was written
    finally:
        _release(holder)
    rc, _, err = cli(capsys, "sae", "train", "--cache", fresh, *TRAIN, "--out", out)
    assert rc == 0, err
    assert (out / HOOKS[1] / "cfg.json").is_file() and sorted(os.listdir(out.parent)) == ["run"]


# --- case 4: --resume with another cache --------------------------------------------------------------
def test_sae_train_resume_with_another_cache_refuses_naming_it(capsys, tmp_path, fresh):
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "sae", "train", "--cache", fresh, *TRAIN, "--out", out)
    assert rc == 0, err
    inputs = json.loads((out / INPUTS_JSON).read_text())
    assert inputs["inputs"]["hooks"] == [HOOKS[1]] and inputs["about"]["cache"] == str(fresh)
    other = Path(shutil.copytree(fresh, tmp_path / "other"))
    meta = json.loads((other / "cache.json").read_text())
    meta["corpus"]["fingerprint"] = "0" * 16  # another corpus's activations, same layout
    (other / "cache.json").write_text(json.dumps(meta))
    before = tree_hash(tmp_path)
    rc, _, err = cli(capsys, "sae", "train", "--cache", other, *TRAIN, "--out", out, "--resume")
    assert_error(rc, err, str(out / INPUTS_JSON), "corpus_fingerprint", "cache_fingerprint", str(other))
    assert tree_hash(tmp_path) == before
    rc, _, err = cli(capsys, "sae", "train", "--cache", fresh, *TRAIN, "--out", out, "--resume")  # same inputs: fine
    assert rc == 0, err


# --- case 8: incomplete caches ------------------------------------------------------------------------
def test_incomplete_cache_is_refused_unless_allowed_and_recorded(capsys, tmp_path, fresh):
    partial = _incomplete(fresh, tmp_path)
    before = tree_hash(tmp_path)
    probe = ["probe", "--cache", partial, "--target", "phones", "--hooks", HOOKS[1], "--split", "clip", "--folds", "2",
             "--max-frames", "200", "--out", tmp_path / "probe"]
    for argv in (probe, ["sae", "train", "--cache", partial, *TRAIN, "--out", tmp_path / "run"]):
        rc, _, err = cli(capsys, *argv)
        assert_error(rc, err, str(partial), "incomplete", "interrupted", "--allow-incomplete")
    assert tree_hash(tmp_path) == before
    rc, _, err = cli(capsys, "sae", "train", "--cache", partial, *TRAIN, "--out", tmp_path / "run", "--allow-incomplete")
    assert rc == 0, err
    state = json.loads((tmp_path / "run" / INPUTS_JSON).read_text())["about"]["cache_state"]
    assert state["complete"] is False and state["allow_incomplete"] is True and state["state"] == "interrupted"


@pytest.mark.parametrize("argv", [
    ["sae", "bench", "--sae", "SAE", "--cache", "CACHE", "--out", "OUT", "--quiet"],
    ["tokens", "analyze", "--cache", "CACHE", "--out", "OUT"],
    ["tokens", "units", "--cache", "CACHE", "--hook", HOOKS[1], "--k", "4", "--out", "OUT"],
    ["steer", "fit", "--cache", "CACHE", "--corpus", "SYNTH", "--sae", "SAE", "--out", "OUT"],
    ["sae", "eval", "--sae", "SAE", "--cache", "CACHE", "--out", "OUT", "--quiet"],
])
def test_every_analysis_refuses_an_incomplete_cache(capsys, tmp_path, fresh, synth, argv):
    from test_bad_inputs_models import _write_sae

    partial = _incomplete(fresh, tmp_path)
    subst = {"SAE": _write_sae(tmp_path / "sae"), "CACHE": partial, "SYNTH": synth, "OUT": tmp_path / "out"}
    before = tree_hash(tmp_path)
    rc, _, err = cli(capsys, *[subst.get(a, a) for a in argv])
    assert_error(rc, err, str(partial), "incomplete", "--allow-incomplete")
    assert tree_hash(tmp_path) == before


def test_cache_info_tells_a_running_build_from_an_interrupted_one(capsys, tmp_path, fresh):
    partial = _incomplete(fresh, tmp_path)
    rc, out, err = cli(capsys, "cache-info", partial)
    assert rc == 0 and "complete=False" in out and "interrupted" in out and "rerun `workbench cache`" in out, out + err
    holder = _hold(partial / ".lock", "workbench cache --out partial")
    try:
        rc, out, _ = cli(capsys, "cache-info", partial)
        assert rc == 0 and f"still running (pid {holder.pid}" in out and "interrupted" not in out
        rc, out, _ = cli(capsys, "cache-info", partial, "--json")
        assert json.loads(out)["build"]["state"] == "running"
        (partial / "index.json").unlink()  # a first build that has not merged anything yet
        rc, out, _ = cli(capsys, "cache-info", partial)
        assert rc == 0 and "no merged data yet" in out and "still running" in out
        rc, _, err = cli(capsys, "sae", "train", "--cache", partial, *TRAIN, "--out", tmp_path / "r")
        assert rc == 2 and not (tmp_path / "r").exists()
    finally:
        _release(holder)


# --- a failed sae eval leaves the earlier evaluation untouched -----------------------------------------
def test_failed_sae_eval_leaves_the_earlier_evaluation(capsys, tmp_path, fresh, monkeypatch):
    from test_bad_inputs_models import _write_sae

    folder = _write_sae(tmp_path / "sae")
    out = tmp_path / "eval"
    rc, _, err = cli(capsys, "sae", "eval", "--sae", folder, "--cache", fresh, "--out", out, "--quiet",
                     "--erasure-probe", "fixed")
    assert rc == 0, err
    assert (out / HOOKS[1] / "eval.json").is_file() and (out / HOOKS[1] / INPUTS_JSON).is_file()
    before = tree_hash(tmp_path)
    from sae import summaries

    def disk_trouble(*a, **k):
        raise OSError("simulated failure half-way through the evaluation")

    monkeypatch.setattr(summaries, "feature_summaries", disk_trouble)
    rc, _, err = cli(capsys, "sae", "eval", "--sae", folder, "--cache", fresh, "--out", out, "--quiet",
                     "--erasure-probe", "fixed", "--max-frames", "500")
    assert_error(rc, err, "simulated failure")
    assert tree_hash(tmp_path) == before and sorted(os.listdir(out)) == [HOOKS[1]]


def test_artifact_dir_keeps_what_other_tools_put_beside(tmp_path):
    out = tmp_path / "eval" / "hook"
    with artifact_dir(out, {"a": 1}) as tmp:
        write_json(tmp / "eval.json", {"v": 1})
        write_json(tmp / "splice.json", {"v": 1})
    (out / "explanations.csv").write_text("feature,explanation\n0,vowels\n")  # sae bench, later, same folder
    with artifact_dir(out, {"a": 2}, keep=("explanations.csv",)) as tmp:
        write_json(tmp / "eval.json", {"v": 2})
    assert sorted(os.listdir(out)) == ["eval.json", "explanations.csv", "inputs.json"]  # the stale splice.json is gone
    assert (out / "explanations.csv").read_text().endswith("vowels\n")
