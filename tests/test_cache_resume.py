"""Crash safety: a build killed with SIGKILL at a known point, then rerun, equals an uninterrupted build.

The child build stalls at a chosen point (``WORKBENCH_CACHE_STALL``: after batch n's shards
are written but before its commit, after its commit, or after the merged files are written
but before the index switches to them), the test SIGKILLs it there, reruns in-process with
the same arguments and compares row counts, a hash per hook and the frame tables with an
uninterrupted build.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.cache import ActivationCache, build_cache
from workbench.cache.store import STALL_ENV
from workbench.corpus import load_corpus

from test_cache import HOOKS, TwoRateModel, hook_hashes, make_corpus, tiny_whisper

TESTS = Path(__file__).resolve().parent
MODELS = {"whisper": (tiny_whisper, HOOKS), "two-rate": (TwoRateModel, "*")}
CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_cache_resume import MODELS
from workbench.cache import build_cache
from workbench.corpus import load_corpus
make, hooks = MODELS[{model!r}]
build_cache(make(), load_corpus({manifest!r}), hooks, {out!r}, batch_seconds=4.0, verbose=False)
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    make_corpus(root)
    return root / "manifest.jsonl"


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    """Uninterrupted builds, one per model."""
    out = {}
    for name, (make, hooks) in MODELS.items():
        out[name] = build_cache(make(), load_corpus(manifest), hooks, tmp_path_factory.mktemp(name) / "ref",
                                batch_seconds=4.0, verbose=False)
    return out


def _kill_at(stall: str, model: str, manifest: Path, out: Path) -> None:
    code = CHILD.format(tests=str(TESTS), model=model, manifest=str(manifest), out=str(out))
    env = {**os.environ, STALL_ENV: stall}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    try:
        while not (out / ".stalled").exists():
            if proc.poll() is not None:
                raise AssertionError(f"child ended before stalling at {stall}:\n{proc.stdout.read().decode()}")
            if time.time() > deadline:
                raise AssertionError(f"child did not reach {stall} in time")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("stall,model", [("commit:1", "whisper"), ("shards:1", "two-rate"), ("merge:0", "two-rate")])
def test_killed_build_resumes_to_identical_cache(stall, model, manifest, reference, tmp_path):
    out = tmp_path / "cache"
    _kill_at(stall, model, manifest, out)
    files = _files(out)
    stage, n = stall.split(":")
    if stage == "commit":  # batches 0..n committed, nothing merged yet
        assert len([f for f in files if f.startswith("progress/")]) == int(n) + 1
    if stage == "shards":  # batch n's shards are on disk without a commit: orphans to be ignored
        assert any(f"_{int(n):05d}.bin" in f for f in files)
        assert not any(f.startswith("progress/") and f.endswith(f"_{int(n):05d}.json") for f in files)
    if stage == "merge":  # merged files written, index not switched: still the unmerged state
        assert any("acts_g0001.bin" in f for f in files)
    if stage in ("commit", "shards"):
        with pytest.raises(RuntimeError, match="rerun"):
            ActivationCache.open(out)

    make, hooks = MODELS[model]
    resumed = build_cache(make(), load_corpus(manifest), hooks, out, batch_seconds=4.0, verbose=False)
    ref = reference[model]
    assert hook_hashes(resumed) == hook_hashes(ref)
    for h in ref.hooks:
        assert resumed.frames(h).equals(ref.frames(h))
    assert resumed.clip_ids == ref.clip_ids and resumed.meta["complete"]
    left = _files(out)
    assert not [f for f in left if "shard_" in f or "part_" in f or f.endswith(".tmp") or f.startswith("progress/")]
    assert len([f for f in left if f.endswith(".bin")]) == len(ref.hooks)  # one merged file per hook
