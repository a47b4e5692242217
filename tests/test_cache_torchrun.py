"""``torchrun --nproc_per_node 2 -m workbench cache ...`` (gloo, CPU) equals a single-process cache.

Each rank caches a contiguous share of the clips into its own shard files; rank 0 merges
them in corpus order. The merged cache must match a single-process build frame for frame:
same frame table (order, labels, times) and the same activations (up to fp16 rounding of
float differences between batchings).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.cache import ActivationCache, build_cache
from workbench.corpus import load_corpus
from workbench.models import load

from test_cache import HOOKS, make_corpus, tiny_whisper


def _torchrun() -> list[str]:
    exe = Path(sys.executable).parent / "torchrun"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.slow
def test_torchrun_two_ranks_equals_single_process(tmp_path):
    make_corpus(tmp_path / "synth", n_speech=5)
    manifest = tmp_path / "synth" / "manifest.jsonl"
    model_dir = tmp_path / "tiny-whisper"  # a local checkpoint: the spec both runs load
    m = tiny_whisper()
    m.hf.save_pretrained(model_dir)
    m.feature_extractor.save_pretrained(model_dir)

    out = tmp_path / "dist"
    cmd = _torchrun() + [
        "--standalone", "--nproc_per_node", "2", "-m", "workbench", "cache", "--model", str(model_dir),
        "--corpus", str(manifest), "--hooks", *HOOKS, "--out", str(out), "--batch-seconds", "3", "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    dist = ActivationCache.open(out)
    summary = json.loads((out / "summary.json").read_text())
    per_rank = summary["this_run"]["clips_per_rank"]
    assert set(per_rank) == {"rank0", "rank1"} and sum(per_rank.values()) == 6  # both ranks did work

    single = build_cache(load(str(model_dir)), load_corpus(manifest), HOOKS, tmp_path / "single",
                         batch_seconds=3.0, verbose=False)
    assert dist.hooks == single.hooks and dist.clip_ids == single.clip_ids
    assert dist.meta["corpus"]["fingerprint"] == single.meta["corpus"]["fingerprint"]
    for h in single.hooks:
        assert dist.frames(h).equals(single.frames(h))
        a, b = dist.load(h), single.load(h)
        assert a.shape == b.shape == (single.n_frames(h), 64)
        np.testing.assert_allclose(a, b, rtol=2**-10, atol=1e-3 * np.abs(b).max())
    leftovers = [p for p in out.rglob("*") if p.is_file() and ("shard_" in p.name or p.suffix == ".tmp")]
    assert not leftovers
