"""A WavCoch-sized cochlear tokenizer: lookup-free quantization (LFQ) of cochleagram frames, 8192 codes.

WavCoch (the AuriStream tokenizer) quantizes a learned 13-dimensional projection of the
cochleagram with LFQ: each dimension's sign is one bit, 13 bits = 8192 codes. :class:`LFQCodebook`
does the same with a projection trained offline in seconds: PCA to 13 whitened components, then an
ITQ rotation (iterative quantization, Gong & Lazebnik 2011: the rotation that brings the frames
closest to the corners ``{-1, +1}^13``, which balances the bits). Tokenizing is one
``[211 x 13]`` product and a sign per frame (far cheaper than nearest-of-8192 k-means), and every
code has a prototype cochleagram frame (``centroids_``: the mean frame of the code in training,
or the projection's reconstruction of its corner when the code never occurred).

:func:`speech_codebook` trains it once on speech the package makes offline (espeak-ng, plus
synthetic non-speech) and caches it under ``$WORKBENCH_CACHE_DIR``; the AuriStream adapter uses
it as ``auristream-tiny?codebook=speech-8192``.

Example
-------
>>> from workbench.models.cochlear_tokens import synthetic_corpus
>>> cb = LFQCodebook(n_codes=64).fit(synthetic_corpus(n_clips=8, seconds=0.5))
>>> ids = cb.encode(synthetic_corpus(n_clips=1, seconds=0.5, seed=3)[0])
>>> ids.shape, bool(ids.max() < 64)
((100,), True)
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from workbench.atomic import atomic_path, write_json
from workbench.models.cochleagram import CochleagramConfig
from workbench.models.cochlear_tokens import MAX_CODES, CochlearCodebook, _clips, synthetic_corpus

__all__ = ["SPEECH_CODEBOOK", "LFQCodebook", "codebook_training_audio", "speech_codebook"]

logger = logging.getLogger(__name__)

#: the WavCoch-sized offline codebook: ``auristream-tiny?codebook=speech-8192``
SPEECH_CODEBOOK = "speech-8192"
_VERSION = "lfq-v1"


class LFQCodebook(CochlearCodebook):
    """LFQ over a PCA + ITQ projection of cochleagram frames (``n_codes`` a power of two, <= 8192)."""

    def __init__(self, n_codes: int = MAX_CODES, seed: int = 0, max_frames: int = 200_000, itq_iters: int = 50,
                 cochleagram: CochleagramConfig | None = None, verbose: bool = False) -> None:
        super().__init__(n_codes=n_codes, seed=seed, max_frames=max_frames, cochleagram=cochleagram, verbose=verbose)
        self.bits = int(round(math.log2(self.n_codes)))
        if 2 ** self.bits != self.n_codes:
            raise ValueError(f"LFQ needs a power-of-two codebook (2 ** bits), got n_codes={n_codes}")
        self.itq_iters = itq_iters
        self.mean_: torch.Tensor | None = None
        self.projection_: torch.Tensor | None = None  # [bits, C]

    def fit_frames(self, frames: np.ndarray) -> LFQCodebook:
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.cochleagram.n_channels:
            raise ValueError(f"frames must be [N, {self.cochleagram.n_channels}], got {x.shape}")
        if len(x) < 4 * self.bits:
            raise ValueError(f"{len(x)} frames are too few to fit {self.bits} LFQ bits")
        rng = np.random.default_rng(self.seed)
        if len(x) > self.max_frames:
            x = x[np.sort(rng.choice(len(x), self.max_frames, replace=False))]
        mu = x.mean(0)
        xc = x - mu
        evals, evecs = np.linalg.eigh(np.cov(xc, rowvar=False))
        top = np.argsort(evals)[::-1][: self.bits]
        white = evecs[:, top] / np.sqrt(np.maximum(evals[top], 1e-12))  # [C, bits]
        v = xc @ white
        rot = np.linalg.qr(rng.standard_normal((self.bits, self.bits)))[0]
        for _ in range(self.itq_iters):  # ITQ: alternate binary codes and the Procrustes rotation
            b = np.sign(v @ rot)
            b[b == 0] = 1
            u, _, wt = np.linalg.svd(v.T @ b)
            rot = u @ wt
        proj = (white @ rot).T  # [bits, C]
        self.mean_ = torch.tensor(mu, dtype=torch.float32)
        self.projection_ = torch.tensor(proj, dtype=torch.float32)
        codes = self.predict_frames(torch.tensor(x, dtype=torch.float32)).numpy()
        # prototypes: the mean training frame of each code; unseen codes: the corner's reconstruction
        corners = ((np.arange(self.n_codes)[:, None] >> np.arange(self.bits)) & 1) * 2.0 - 1.0
        scale = np.abs(x @ proj.T - mu @ proj.T).mean(0)
        cents = mu + (corners * scale) @ np.linalg.pinv(proj).T
        sums = np.zeros((self.n_codes, x.shape[1]))
        np.add.at(sums, codes, x)
        n = np.bincount(codes, minlength=self.n_codes)
        cents[n > 0] = sums[n > 0] / n[n > 0, None]
        self.centroids_ = torch.tensor(cents, dtype=torch.float32)
        self.train_codes_used_ = int((n > 0).sum())
        logger.log(logging.INFO if self.verbose else logging.DEBUG, "LFQ codebook: %d bits, %d of %d codes used "
                   "on %d training frames", self.bits, self.train_codes_used_, self.n_codes, len(x))
        return self

    def predict_frames(self, frames: torch.Tensor) -> torch.Tensor:
        if self.projection_ is None:
            raise RuntimeError("LFQCodebook is not fitted: call fit(corpus) or LFQCodebook.load(dir)")
        z = (frames.float() - self.mean_.to(frames.device)) @ self.projection_.to(frames.device).T
        weights = 2 ** torch.arange(self.bits, device=frames.device)
        return ((z > 0).long() * weights).sum(-1)

    def save(self, directory: str | os.PathLike) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "codebook.safetensors") as tmp:
            save_file({"centroids": self._check_fitted().contiguous(), "mean": self.mean_.contiguous(),
                       "projection": self.projection_.contiguous()}, str(tmp))
        from dataclasses import asdict

        write_json(d / "codebook.json", {"n_codes": self.n_codes, "seed": self.seed, "max_frames": self.max_frames,
                                         "method": "lfq", "bits": self.bits, "itq_iters": self.itq_iters,
                                         "cochleagram": asdict(self.cochleagram.config),
                                         "train_codes_used": getattr(self, "train_codes_used_", None),
                                         "format": "workbench.cochlear_codebook/1"}, indent=2)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LFQCodebook:
        d = Path(directory)
        for name in ("codebook.json", "codebook.safetensors"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name}: not a saved cochlear codebook (missing {name})")
        meta = json.loads((d / "codebook.json").read_text())
        if meta.get("method") != "lfq":
            raise ValueError(f"{d}: not an LFQ codebook (method {meta.get('method')!r})")
        cb = cls(n_codes=meta["n_codes"], seed=meta["seed"], max_frames=meta.get("max_frames", 200_000),
                 itq_iters=meta.get("itq_iters", 50), cochleagram=CochleagramConfig(**meta["cochleagram"]))
        t = load_file(str(d / "codebook.safetensors"))
        cb.centroids_, cb.mean_, cb.projection_ = t["centroids"], t["mean"], t["projection"]
        if cb.projection_.shape != (cb.bits, cb.cochleagram.n_channels):
            raise ValueError(f"{d}: projection has shape {tuple(cb.projection_.shape)}, "
                             f"expected ({cb.bits}, {cb.cochleagram.n_channels})")
        return cb


def codebook_training_audio(seconds: float = 600.0, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Offline training audio for :func:`speech_codebook`, and a description of it.

    About ``seconds`` of espeak-ng speech (every built-in sentence, 16 voices x variants, pitches
    and rates; :mod:`workbench.corpus.synth`) plus 48 s of seeded synthetic non-speech
    (:func:`synthetic_corpus`) so that tones, noise and silence get codes too. Deterministic.
    """
    from workbench.corpus.synth import SENTENCES, make_speakers, synthesize

    clips = synthetic_corpus(n_clips=48, seconds=1.0, seed=seed)
    speakers = make_speakers(16, seed)
    rng = np.random.default_rng(seed)
    total, i = 0.0, 0
    while total < seconds:
        spk, text = speakers[i % len(speakers)], SENTENCES[int(rng.integers(len(SENTENCES)))]
        audio = synthesize(text, voice=spk.espeak_voice, pitch=spk.pitch, rate=spk.rate, sr=16000).audio
        clips.append(np.asarray(audio, np.float32))
        total += len(audio) / 16000
        i += 1
    return clips, f"{total:.0f} s espeak-ng speech ({i} utterances, 16 voices) + 48 s synthetic non-speech"


def speech_codebook(cache_dir: str | os.PathLike | None = None, n_codes: int = MAX_CODES, seed: int = 0,
                    audio=None, tag: str | None = None, verbose: bool = False) -> CochlearCodebook:
    """The WavCoch-sized cochlear codebook (8192 codes, 13 LFQ bits), trained once and cached.

    :class:`LFQCodebook` fitted on the 211-channel cochleagram frames of :func:`codebook_training_audio` (or of ``audio``: clips or a Corpus, named by
    ``tag``, e.g. real speech the caller has); saved under ``$WORKBENCH_CACHE_DIR`` (default: the
    user cache dir) as ``cochlear-codebook-speech-8192-lfq-v1-s0/`` and loaded from there afterwards.
    """
    from workbench.models.ct2_import import cache_root

    root = Path(cache_dir) if cache_dir else cache_root()
    if audio is not None and not tag:
        raise ValueError("speech_codebook(audio=...) needs a tag naming the audio (it keys the cached codebook)")
    name = f"speech-{n_codes}" if audio is None else f"{tag}-{n_codes}"
    d = root / f"cochlear-codebook-{name}-{_VERSION}-s{seed}"
    if (d / "codebook.json").is_file():
        return LFQCodebook.load(d)
    clips, what = codebook_training_audio(seed=seed) if audio is None else (list(_clips(audio)), tag)
    logger.info("training the %d-code cochlear codebook once on %s (cached in %s)", n_codes, what, d)
    cb = LFQCodebook(n_codes=n_codes, seed=seed, verbose=verbose)
    # one long signal: the cochleagram reuses one filter plan per chunk instead of one per clip length
    gap = np.zeros(1600, np.float32)
    cb.fit([np.concatenate([x for c in clips for x in (np.asarray(c, np.float32), gap)])])
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    cb.save(tmp)
    meta = json.loads((tmp / "codebook.json").read_text())
    write_json(tmp / "codebook.json", {**meta, "training_audio": what}, indent=2)
    try:
        os.replace(tmp, d)  # atomic: a concurrent first use keeps whichever finished first
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return LFQCodebook.load(d)
