"""Integer hooks (token ids, codec codes) are cached exactly, as int32, next to float hooks.

float16 holds integers exactly only up to 2048 and bfloat16 only up to 256, so ids/codes above
that must not go through the float cache dtype. The AuriStream model here is ``auristream-tiny``
with a WavCoch-sized vocabulary (8192 codes): its codebook's centroids are the cochleagram frames
of the test clips themselves, scattered over all 8192 slots, so the clips tokenize to ids across
the whole range (many above 2048, many odd: float16 would round those). The tests assert that
storing these ids as float16 *would* corrupt them, so they can fail. The codec test uses a
random DAC with 4096 codes per codebook and a bfloat16 cache.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import workbench.models
from workbench.audio import load_audio
from workbench.cache import ActivationCache, CacheMismatchError, build_cache
from workbench.cache.store import CACHE_JSON
from workbench.corpus.nonspeech import synth_nonspeech

IDS, RESID = "tokens.hook_ids", "lm.blocks.1.hook_resid_post"
CODES, LATENT = "quantizer.hook_codes", "hook_latent"
N_CODES = 8192


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synth_nonspeech(5, tmp_path_factory.mktemp("ns"), seed=0, duration_s=0.6)


@pytest.fixture(scope="module")
def clips(corpus):
    return [load_audio(corpus.audio_path(c), sr=16000) for c in corpus.clips]


@pytest.fixture(scope="module")
def auristream(clips, tmp_path_factory):
    from workbench.models.cochlear_tokens import CochlearCodebook

    cb = CochlearCodebook(n_codes=N_CODES, seed=0)
    frames = cb.frames(clips)
    rng = np.random.default_rng(0)
    cents = rng.standard_normal((N_CODES, frames.shape[1])).astype(np.float32) * 100 + 1000  # far from any frame
    cents[rng.choice(N_CODES, len(frames), replace=False)] = frames
    cb.centroids_ = torch.from_numpy(cents)
    d = cb.save(tmp_path_factory.mktemp("codebook"))
    return workbench.models.load(f"auristream-tiny?codebook={d}")


def _ref(model, clips, hooks):
    out = model.run_with_cache(list(clips), hooks)
    return {h: torch.cat([o[h] for o in out]).numpy() for h in hooks}


def _concat(batches) -> np.ndarray:
    return torch.cat(list(batches)).numpy()


def test_adapters_declare_integer_hooks(auristream):
    assert auristream.integer_hooks == {IDS}
    assert workbench.models.base.AudioModel.integer_hooks.fget(auristream) == set()


def test_auristream_ids_exact(auristream, corpus, clips, tmp_path):
    ref = _ref(auristream, clips, [IDS, RESID])
    ids = ref[IDS]
    assert ids.dtype == np.int64 and ids.shape[1] == 1
    # the check can fail: these ids are not representable in float16
    assert ids.max() > 2048 and (ids > 2048).sum() > 50
    assert not np.array_equal(ids.astype(np.float16).astype(np.int64), ids)

    out = tmp_path / "cache"
    # first 2 clips, then the rest: a resumed build merges the int32 final file with new pieces
    build_cache(auristream, corpus, [IDS, RESID], out, batch_seconds=0.5, max_clips=2, verbose=False)
    cache = build_cache(auristream, corpus, [IDS, RESID], out, batch_seconds=1.0, verbose=False)
    meta = json.loads((out / CACHE_JSON).read_text())
    assert meta["hook_dtypes"] == {IDS: "int32", RESID: "float16"}
    assert cache.hook_dtype(IDS) == "int32" and cache.hook_dtype(RESID) == "float16"
    assert cache.info()["hooks"][IDS]["dtype"] == "int32"

    got = cache.acts(IDS)
    assert got.dtype == np.int32 and got.shape == ids.shape
    np.testing.assert_array_equal(got, ids)
    assert cache.acts_torch(IDS).dtype == torch.int32
    np.testing.assert_array_equal(cache.load(IDS), ids.astype(np.float32))
    assert cache.load(IDS).dtype == np.float32
    rows = np.array([7, 3, len(ids) - 1, 0])
    np.testing.assert_array_equal(cache.load(IDS, rows), ids[rows].astype(np.float32))
    batches = cache.batches(IDS, 64, shuffle=False, max_norm_ratio=None)
    np.testing.assert_array_equal(_concat(batches), ids.astype(np.float32))
    shuffled = _concat(cache.batches(IDS, 64, shuffle=True, max_norm_ratio=None))
    np.testing.assert_array_equal(np.sort(shuffled[:, 0]), np.sort(ids[:, 0]).astype(np.float32))

    x = cache.acts(RESID)
    assert x.dtype == np.float16 and x.shape == ref[RESID].shape
    np.testing.assert_allclose(cache.load(RESID), ref[RESID], rtol=2e-3, atol=2e-3)


def test_codec_codes_exact_in_bfloat16_cache(corpus, clips, tmp_path):
    from workbench.models.codec import random_codec

    codec = random_codec("dac", codebook_size=4096)
    assert codec.integer_hooks == {CODES}
    ref = _ref(codec, clips, [LATENT, CODES])
    codes = ref[CODES]
    assert codes.max() > 2048 and not np.array_equal(codes.astype(np.float16).astype(np.int64), codes)
    cache = build_cache(codec, corpus, [LATENT, CODES], tmp_path / "c", dtype="bfloat16", batch_seconds=1.0,
                        verbose=False)
    assert cache.acts(CODES).dtype == np.int32 and cache.acts(LATENT).dtype == np.uint16
    np.testing.assert_array_equal(cache.acts(CODES), codes)
    np.testing.assert_array_equal(_concat(cache.batches(CODES, 50, shuffle=False, max_norm_ratio=None)),
                                  codes.astype(np.float32))
    assert cache.acts_torch(CODES).dtype == torch.int32 and cache.acts_torch(LATENT).dtype == torch.bfloat16
    np.testing.assert_allclose(cache.load(LATENT), ref[LATENT], rtol=1e-2, atol=1e-2)


def test_old_cache_without_hook_dtypes(auristream, corpus, tmp_path):
    """cache.json from before ``hook_dtypes``: every hook in the cache dtype."""
    out = tmp_path / "float_only"
    build_cache(auristream, corpus, [RESID], out, verbose=False)
    meta = json.loads((out / CACHE_JSON).read_text())
    del meta["hook_dtypes"]
    (out / CACHE_JSON).write_text(json.dumps(meta))
    old = ActivationCache.open(out)
    assert old.acts(RESID).dtype == np.float16 and old.hook_dtype(RESID) == "float16"
    # a float-only old cache may be continued: the effective per-hook dtypes match
    build_cache(auristream, corpus, [RESID], out, verbose=False)

    # an old cache that stored ids as float16: readable as such, but a rerun is refused
    out = tmp_path / "ids_fp16"
    cache = build_cache(auristream, corpus, [IDS], out, verbose=False)
    info = cache._hook(IDS)
    ids16 = np.asarray(cache.acts(IDS)).astype(np.float16)
    (out / info["file"]).write_bytes(ids16.tobytes())
    meta = json.loads((out / CACHE_JSON).read_text())
    del meta["hook_dtypes"]
    (out / CACHE_JSON).write_text(json.dumps(meta))
    old = ActivationCache.open(out)
    assert old.acts(IDS).dtype == np.float16
    np.testing.assert_array_equal(old.load(IDS), ids16.astype(np.float32))
    with pytest.raises(CacheMismatchError, match="hook_dtypes"):
        build_cache(auristream, corpus, [IDS], out, verbose=False)
