"""Live SAE training data (``sae.data.ModelSource``): the frames it yields are exactly the model's
``run_with_cache`` frames, each once per epoch, aligned across hooks, reproducible, and loadable from a corpus."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from sae.data import ModelSource
from workbench.corpus.types import Clip, Corpus

A, B = "encoder.blocks.0.hook_resid_post", "encoder.blocks.1.hook_resid_pre"  # the same tensor in Whisper
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    from workbench.models.whisper import random_whisper

    return random_whisper(seed=0)


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(0)  # 6 clips of 1 s: 50 frames each, 300 in all
    return [(0.2 * rng.standard_normal(16000)).astype(np.float32) for _ in range(6)]


def _all_rows(src, epoch, hook):
    return torch.cat([b[hook] for b in src.epoch(epoch)])


def test_frames_are_the_models_frames_each_once(tiny, audio):
    src = ModelSource(tiny, audio, [A, B], batch_size=50, seed=0, buffer_batches=2, clips_per_forward=4)
    batches = list(src.epoch(0))
    assert all(b[A].shape == (50, tiny.d_model) for b in batches)
    assert all(torch.equal(b[A], b[B]) for b in batches)  # hooks stay paired frame for frame
    got = torch.cat([b[A] for b in batches])
    ref = torch.cat([tiny.run_with_cache(a, [A])[A] for a in audio]).float()  # clip by clip, no source
    assert got.shape == ref.shape == (300, tiny.d_model)
    # a bijection: every reference frame is matched by exactly one emitted frame (and vice versa)
    dist = torch.cdist(got, ref)
    nearest = dist.argmin(dim=1)
    assert sorted(nearest.tolist()) == list(range(300))
    assert float(dist.min(dim=1).values.max()) < 1e-3 * float(ref.norm(dim=1).mean())
    # shuffled: consecutive emitted frames are not consecutive frames of one clip
    assert float((nearest[1:] - nearest[:-1] == 1).float().mean()) < 0.2
    assert src.d_model(A) == tiny.d_model


def test_epochs_are_reproducible_and_resumable(tiny, audio):
    src = ModelSource(tiny, audio, [A], batch_size=50, seed=1, buffer_batches=2)
    first = _all_rows(src, 0, A)
    assert torch.equal(first, _all_rows(src, 0, A))  # same (seed, epoch): same batches
    assert not torch.equal(first, _all_rows(src, 1, A))  # another epoch: another order
    assert torch.equal(torch.cat([b[A] for b in src.epoch(0, skip=2)]), first[100:])  # resume after 2 batches
    other = ModelSource(tiny, audio, [A], batch_size=50, seed=2, buffer_batches=2)
    assert not torch.equal(first, _all_rows(other, 0, A))


def test_reads_clips_from_a_corpus(tiny, audio, tmp_path):
    for i, a in enumerate(audio):
        sf.write(tmp_path / f"c{i}.wav", a, 16000, subtype="FLOAT")
    corpus = Corpus([Clip(f"c{i}", f"c{i}.wav", domain="noise", duration_s=1.0) for i in range(len(audio))],
                    root=tmp_path)
    from_files = ModelSource(tiny, corpus, [A], batch_size=50, seed=0, buffer_batches=2)
    from_arrays = ModelSource(tiny, audio, [A], batch_size=50, seed=0, buffer_batches=2)
    torch.testing.assert_close(_all_rows(from_files, 0, A), _all_rows(from_arrays, 0, A))
