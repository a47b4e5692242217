"""The cache's concurrent-build lock (a second build refuses while one holds it, and runs once the holder
is gone, even killed) and ``workbench cache-info`` (plain and ``--json``), on the deterministic cochleagram."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from workbench.cache import build_cache
from workbench.cli import main
from workbench.corpus.types import Clip, Corpus

HOOK = "cochleagram.hook_out"
LENGTHS = [8000, 12345, 4321]  # samples at 16 kHz -> ceil(n / 80) frames each at 200 Hz


@pytest.fixture()
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    clips = []
    for i, n in enumerate(LENGTHS):
        sf.write(tmp_path / f"c{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        clips.append(Clip(f"c{i}", f"c{i}.wav", domain="environment", duration_s=n / 16000))
    corpus = Corpus(clips, root=tmp_path)
    corpus.save(tmp_path / "manifest.jsonl")
    return corpus


@pytest.fixture(scope="module")
def model():
    from workbench.models import load

    return load("cochleagram")


def _hold_lock(root):
    """Another process that takes the cache's lock and keeps it until killed."""
    code = ("import sys, time; from workbench.cache.meta import DirLock; l = DirLock(sys.argv[1]); l.acquire(); "
            "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_build_refuses_while_another_holds_the_lock(corpus, model, tmp_path, capsys):
    out = tmp_path / "cache"
    holder = _hold_lock(out)
    try:
        with pytest.raises(RuntimeError, match=r"another build is writing the cache .*\.lock"):
            build_cache(model, corpus, HOOK, out, verbose=False)
        rc = main(["cache", "--model", "cochleagram", "--corpus", str(tmp_path / "manifest.jsonl"), "--hooks", HOOK,
                   "--out", str(out), "--quiet"])
        assert rc == 2 and "workbench cache: error: another build is writing" in capsys.readouterr().err
        assert not (out / "cache.json").exists()  # refused before writing anything
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a killed holder frees the lock (flock dies with the process)
        holder.wait()
    cache = build_cache(model, corpus, HOOK, out, verbose=False)
    assert cache.n_frames(HOOK) == sum(math.ceil(n / 80) for n in LENGTHS)
    # the lock is released after a build: a rerun (nothing left to do) gets it again
    assert build_cache(model, corpus, HOOK, out, verbose=False).n_frames(HOOK) == cache.n_frames(HOOK)


def test_cache_info_plain_and_json(corpus, model, tmp_path, capsys):
    out = tmp_path / "cache"
    build_cache(model, corpus, [HOOK, "cochleagram.hook_envelope"], out, verbose=False)
    frames = sum(math.ceil(n / 80) for n in LENGTHS)  # 100 + 155 + 55
    assert main(["cache-info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["root"] == str(out) and info["complete"] is True
    assert info["clips"] == 3 and info["skipped"] == 0 and info["model"]["spec"] == "cochleagram"
    assert info["hooks"][HOOK] == {"frames": frames, "d_model": 211, "frame_rate": 200.0, "dtype": "float16"}
    assert set(info["hooks"]) == {HOOK, "cochleagram.hook_envelope"}
    assert info["summary"]["frames_per_domain"] == {"environment": frames}
    assert main(["cache-info", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{HOOK}: {frames} frames x 211 @ 200 Hz" in text and "3 clips, 0 skipped, complete=True" in text
    assert main(["cache-info", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
