"""The WavCoch-sized LFQ cochlear codebook: bits are signs of a trained projection, codes spread over
the codebook, save/load round trip through CochlearCodebook.load, and the AuriStream adapter uses it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.models.cochlear_lfq import LFQCodebook
from workbench.models.cochlear_tokens import CochlearCodebook, synthetic_corpus


@pytest.fixture(scope="module")
def frames():
    """Planted frames: 211-channel vectors around 16 well-separated prototypes (4 bits of structure)."""
    rng = np.random.default_rng(0)
    protos = rng.standard_normal((16, 211)) * 3
    which = rng.integers(16, size=4000)
    return (protos[which] + 0.1 * rng.standard_normal((4000, 211))).astype(np.float32), which


def test_lfq_bits_separate_planted_prototypes(frames):
    x, which = frames
    cb = LFQCodebook(n_codes=256, seed=0).fit_frames(x)
    codes = cb.predict_frames(torch.from_numpy(x)).numpy()
    assert codes.min() >= 0 and codes.max() < 256
    # every prototype maps to one code (noise is far below the prototype spread) ...
    for p in range(16):
        assert len(set(codes[which == p].tolist())) == 1
    # ... and almost all prototypes get codes of their own (8 sign bits for 16 clusters)
    assert len(set(codes.tolist())) >= 14
    # prototypes: the mean training frame of each used code
    c0 = int(codes[0])
    np.testing.assert_allclose(cb.centroids_[c0].numpy(), x[codes == c0].mean(0), atol=1e-4)


def test_lfq_needs_a_power_of_two():
    with pytest.raises(ValueError, match="power-of-two"):
        LFQCodebook(n_codes=1000)


@pytest.mark.slow
def test_save_load_round_trip_and_auristream(tmp_path):
    import workbench.models

    clips = synthetic_corpus(n_clips=8, seconds=0.5)
    cb = LFQCodebook(n_codes=8192).fit(clips)
    d = cb.save(tmp_path / "cb")
    again = CochlearCodebook.load(d)  # dispatches on codebook.json's method
    assert isinstance(again, LFQCodebook) and again.n_codes == 8192
    np.testing.assert_array_equal(again.encode(clips[1]), cb.encode(clips[1]))
    model = workbench.models.load(f"auristream-tiny?codebook={d}")
    ids = model.run_with_cache(clips[1], ["tokens.hook_ids"])["tokens.hook_ids"][:, 0].numpy()
    np.testing.assert_array_equal(ids, cb.encode(clips[1]))
