"""Offline cochlear tokens: a k-means codebook over cochleagram frames, and a tiny causal GPT.

WavCoch (the AuriStream tokenizer) and the AuriStream LMs live on the Hugging Face hub. These
stand-ins implement the *same interfaces* with nothing to download, so the AuriStream adapter
(:mod:`workbench.models.auristream`) runs and is tested end to end offline:

- :class:`CochlearCodebook` is fitted (scikit-learn ``MiniBatchKMeans``, up to 8192 codes,
  deterministic for a seed) on the 211-channel, 200 Hz cochleagram frames of a corpus, saved as
  ``codebook.safetensors`` + ``codebook.json``, and called like WavCoch:
  ``codebook(wav[B, 1, T], sample_rate=16000).input_ids`` -> ``[B, T // 80]`` in ``[0, n_codes)``.
- :class:`TinyCochlearGPT` is a small GPT (token + position embeddings, pre-norm causal blocks,
  final norm, LM head) called like AuriStream:
  ``lm(ids, output_hidden_states=True, return_dict=True)`` -> ``.hidden_states`` (index 0 = token +
  position embeddings, entry ``i + 1`` = output of block ``i``, the last one before the final
  norm) and ``.logits``.
- :func:`train_tiny_lm` trains it on next-token prediction (optional; the adapter works at random init).

Example
-------
>>> from workbench.models.cochlear_tokens import CochlearCodebook, TinyCochlearGPT, TinyGPTConfig, synthetic_corpus
>>> import torch
>>> codebook = CochlearCodebook(n_codes=16, seed=0).fit(synthetic_corpus(n_clips=4, seconds=0.5))
>>> ids = codebook(torch.zeros(1, 1, 1600), sample_rate=16000).input_ids
>>> ids.shape
torch.Size([1, 20])
>>> lm = TinyCochlearGPT(TinyGPTConfig(vocab_size=16, n_layer=2, n_embd=32, n_head=2))
>>> len(lm(ids, output_hidden_states=True, return_dict=True).hidden_states)
3
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from threadpoolctl import threadpool_limits
from torch import nn

from workbench.atomic import atomic_path, write_json
from workbench.models.cochleagram import Cochleagram, CochleagramConfig

__all__ = ["TokenizerOutput", "CochlearCodebook", "TinyGPTConfig", "TinyCochlearGPT", "LMOutput", "train_tiny_lm",
           "synthetic_corpus"]

logger = logging.getLogger(__name__)
MAX_CODES = 8192


@dataclass
class TokenizerOutput:
    """What a WavCoch-style tokenizer returns; ``input_values`` and ``out["input_ids"]`` also work."""

    input_ids: torch.Tensor

    @property
    def input_values(self) -> torch.Tensor:  # name used by older WavCoch versions
        return self.input_ids

    def __getitem__(self, key: str) -> torch.Tensor:
        return getattr(self, key)


def _clips(audio) -> Iterable[np.ndarray]:
    """Float32 mono clips from a list of arrays or a :class:`~workbench.corpus.Corpus` (loaded at 16 kHz)."""
    if hasattr(audio, "clips") and hasattr(audio, "audio_path"):
        from workbench.audio import load_audio

        for clip in audio:
            yield load_audio(audio.audio_path(clip), sr=16000)
    else:
        for a in audio:
            a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float32)
            if a.ndim != 1:
                raise ValueError(f"expected mono 1-D clips, got shape {a.shape}")
            yield a


class CochlearCodebook:
    """k-means codebook over cochleagram frames: a WavCoch-compatible, offline tokenizer.

    Parameters
    ----------
    n_codes : codebook size (2 .. 8192).
    seed : k-means seed; the same data and seed give the same codebook.
    max_frames : frames sampled (with ``seed``) from the corpus for fitting.
    cochleagram : front-end parameters (default: 211 channels at 200 Hz).

    Example
    -------
    >>> cb = CochlearCodebook(n_codes=8).fit(synthetic_corpus(n_clips=3, seconds=0.5))
    >>> cb.encode(np.zeros(800, np.float32)).tolist() == [cb.encode(np.zeros(80, np.float32))[0]] * 10
    True
    """

    def __init__(self, n_codes: int = 1024, seed: int = 0, max_frames: int = 200_000, batch_size: int = 4096,
                 n_init: int = 3, max_iter: int = 100, cochleagram: CochleagramConfig | None = None,
                 verbose: bool = False, init: str = "k-means++") -> None:
        if not 2 <= int(n_codes) <= MAX_CODES:
            raise ValueError(f"n_codes must be in [2, {MAX_CODES}], got {n_codes}")
        self.n_codes, self.seed, self.max_frames = int(n_codes), int(seed), int(max_frames)
        self.batch_size, self.n_init, self.max_iter, self.verbose = batch_size, n_init, max_iter, verbose
        self.init = init  # "random" (frames drawn as centres) keeps 8192-code fits fast; k-means++ is O(k^2)
        self.cochleagram = Cochleagram(cochleagram)
        self.centroids_: torch.Tensor | None = None
        self.sample_rate = self.cochleagram.config.sample_rate
        self.hop = self.cochleagram.config.hop

    # --- fitting ------------------------------------------------------------------------------
    @torch.no_grad()
    def frames(self, audio) -> np.ndarray:
        """Cochleagram frames ``[N, n_channels]`` of every clip, concatenated."""
        out = [self.cochleagram(torch.from_numpy(a))[0].T.numpy() for a in _clips(audio)]
        if not out:
            raise ValueError("no audio to fit the codebook on")
        return np.concatenate(out)

    def fit(self, audio) -> "CochlearCodebook":
        """Fit on a corpus (a :class:`~workbench.corpus.Corpus` or a list of 16 kHz clips)."""
        return self.fit_frames(self.frames(audio))

    def fit_frames(self, frames: np.ndarray) -> "CochlearCodebook":
        from sklearn.cluster import MiniBatchKMeans

        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.cochleagram.n_channels:
            raise ValueError(f"frames must be [N, {self.cochleagram.n_channels}], got {frames.shape}")
        if len(frames) < self.n_codes:
            raise ValueError(f"{len(frames)} frames ({len(frames) / 200:.1f} s of audio) cannot fit {self.n_codes} codes;"
                             " use more audio or fewer codes")
        if len(frames) > self.max_frames:
            rows = np.random.default_rng(self.seed).choice(len(frames), self.max_frames, replace=False)
            frames = frames[np.sort(rows)]
        km = MiniBatchKMeans(n_clusters=self.n_codes, random_state=self.seed, batch_size=self.batch_size,
                             n_init=self.n_init, max_iter=self.max_iter, verbose=int(self.verbose), init=self.init)
        # small fits run single-threaded: thread start-up and oversubscription dominate them
        small = len(frames) * self.n_codes < 50_000_000
        with threadpool_limits(1) if small else contextlib.nullcontext():
            km.fit(frames)
        self.centroids_ = torch.tensor(km.cluster_centers_, dtype=torch.float32)
        self.inertia_ = float(km.inertia_)
        logger.log(logging.INFO if self.verbose else logging.DEBUG, "fitted %d cochlear codes on %d frames (inertia %.4g)",
                   self.n_codes, len(frames), self.inertia_)
        return self

    # --- tokenizing ---------------------------------------------------------------------------
    def _check_fitted(self) -> torch.Tensor:
        if self.centroids_ is None:
            raise RuntimeError("CochlearCodebook is not fitted: call fit(corpus) or CochlearCodebook.load(dir)")
        return self.centroids_

    def predict_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Nearest code (squared Euclidean) for each frame ``[..., n_channels]`` -> int64 ``[...]``."""
        cents = self._check_fitted().to(frames.device)
        flat = frames.reshape(-1, frames.shape[-1]).float()
        dist = (cents * cents).sum(1)[None] - 2 * flat @ cents.T  # |x|^2 is the same for every code
        return dist.argmin(dim=1).reshape(frames.shape[:-1])

    @torch.no_grad()
    def encode(self, clip: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tokens of one 16 kHz clip: int64 ``[len(clip) // 80]``."""
        x = torch.as_tensor(np.asarray(clip, dtype=np.float32))
        coch = self.cochleagram(x)[0].T[: len(x) // self.hop]  # [T // 80, C]
        return self.predict_frames(coch).numpy()

    def transform(self, audio) -> list[np.ndarray]:
        """sklearn-style: tokens of every clip of a corpus / list of clips."""
        return [self.encode(a) for a in _clips(audio)]

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor, sample_rate: int = 16000) -> TokenizerOutput:
        """WavCoch interface: ``wav`` ``[B, 1, T]`` (or ``[B, T]``) -> ``.input_ids`` ``[B, T // 80]``."""
        if sample_rate != self.sample_rate:
            raise ValueError(f"CochlearCodebook expects {self.sample_rate} Hz audio, got sample_rate={sample_rate}")
        wav = torch.as_tensor(wav)
        if wav.dim() == 3:
            wav = wav[:, 0]
        if wav.dim() != 2:
            raise ValueError(f"expected wav [B, 1, T] or [B, T], got shape {tuple(wav.shape)}")
        ids = torch.stack([torch.from_numpy(self.encode(w.float().cpu())) for w in wav])
        return TokenizerOutput(input_ids=ids.to(wav.device))

    # --- persistence --------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``codebook.safetensors`` (centroids) and ``codebook.json`` (settings) atomically."""
        cents = self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"n_codes": self.n_codes, "seed": self.seed, "max_frames": self.max_frames,
                "cochleagram": asdict(self.cochleagram.config), "inertia": getattr(self, "inertia_", None),
                "format": "workbench.cochlear_codebook/1"}
        with atomic_path(d / "codebook.safetensors") as tmp:
            save_file({"centroids": cents.contiguous()}, str(tmp))
        write_json(d / "codebook.json", meta, indent=2)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "CochlearCodebook":
        d = Path(directory)
        for name in ("codebook.json", "codebook.safetensors"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name}: not a saved CochlearCodebook (missing {name})")
        meta = json.loads((d / "codebook.json").read_text())
        if meta.get("method") == "lfq" and cls is CochlearCodebook:
            from workbench.models.cochlear_lfq import LFQCodebook  # the WavCoch-sized LFQ codebook

            return LFQCodebook.load(d)
        cb = cls(n_codes=meta["n_codes"], seed=meta["seed"], max_frames=meta.get("max_frames", 200_000),
                 cochleagram=CochleagramConfig(**meta["cochleagram"]))
        cb.centroids_ = load_file(str(d / "codebook.safetensors"))["centroids"]
        if cb.centroids_.shape != (cb.n_codes, cb.cochleagram.n_channels):
            raise ValueError(f"{d}: centroids have shape {tuple(cb.centroids_.shape)}, "
                             f"expected ({cb.n_codes}, {cb.cochleagram.n_channels})")
        return cb


def synthetic_corpus(n_clips: int = 8, seconds: float = 1.0, seed: int = 0, sr: int = 16000) -> list[np.ndarray]:
    """Seeded synthetic clips (tones, harmonic complexes, chirps, noise bursts, silences) for a
    codebook that covers the cochleagram without any real data."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    clips = []
    for i in range(n_clips):
        f0 = float(np.exp(rng.uniform(np.log(80), np.log(6000))))
        kind = i % 4
        if kind == 0:
            x = np.sin(2 * np.pi * f0 * t)
        elif kind == 1:
            x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6) if f0 * k < sr / 2)
        elif kind == 2:
            f1 = float(np.exp(rng.uniform(np.log(80), np.log(6000))))
            x = np.sin(2 * np.pi * np.cumsum(np.geomspace(f0, f1, len(t))) / sr)
        else:
            x = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * rng.uniform(2, 8) * t) > 0)
        x = x * rng.uniform(0.05, 0.5) / (np.abs(x).max() + 1e-9)
        x[int(len(t) * 0.8):] = 0.0  # every clip ends in silence
        clips.append(x.astype(np.float32))
    return clips


# --- tiny GPT ---------------------------------------------------------------------------------
@dataclass
class TinyGPTConfig:
    vocab_size: int = 1024
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    block_size: int = 4096  # maximum tokens per pass (AuriStream: 4096 = 20.48 s)
    mlp_ratio: int = 4


@dataclass
class LMOutput:
    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = field(default=None)

    def __getitem__(self, key: str):
        return getattr(self, key)


class _Block(nn.Module):
    """Pre-norm causal block: ``x + attn(norm1(x))``, then ``+ mlp(norm2(x))`` (AuriStream's layout)."""

    def __init__(self, cfg: TinyGPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.norm1, self.norm2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        hidden = cfg.mlp_ratio * cfg.n_embd
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, hidden), nn.GELU(), nn.Linear(hidden, cfg.n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(att)
        return x + self.mlp(self.norm2(x))


class TinyCochlearGPT(nn.Module):
    """A small causal GPT over cochlear tokens with AuriStream's calling convention.

    ``forward(ids [B, T], output_hidden_states=False, return_dict=True)`` -> :class:`LMOutput`
    (``logits [B, T, vocab]``, ``hidden_states``: ``n_layer + 1`` tensors ``[B, T, n_embd]``).
    """

    def __init__(self, config: TinyGPTConfig | None = None, seed: int | None = 0) -> None:
        super().__init__()
        self.config = cfg = config or TinyGPTConfig()
        # a seeded init that leaves the global RNG alone
        with torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
            self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layer))
            self.ln_f = nn.LayerNorm(cfg.n_embd)
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
            for m in self.modules():  # GPT-2 style: N(0, 0.02) weights, zero biases
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)
        self.eval()

    def forward(self, ids: torch.Tensor, output_hidden_states: bool = False, return_dict: bool = True):
        b, t = ids.shape
        if t > self.config.block_size:
            raise ValueError(f"{t} tokens exceed block_size={self.config.block_size}; run longer input in windows")
        pos = torch.arange(t, device=ids.device)
        x = self.wte(ids) + self.wpe(pos)[None]
        hidden = [x]
        for block in self.blocks:
            x = block(x)
            hidden.append(x)
        logits = self.lm_head(self.ln_f(x))
        states = tuple(hidden) if output_hidden_states else None
        return LMOutput(logits, states) if return_dict else (logits, states)

    def save(self, directory: str | os.PathLike) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        with atomic_path(d / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        write_json(d / "config.json", {"model_type": "tiny_cochlear_gpt", **asdict(self.config)}, indent=2)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TinyCochlearGPT":
        d = Path(directory)
        cfg = json.loads((d / "config.json").read_text())
        cfg.pop("model_type", None)
        model = cls(TinyGPTConfig(**cfg), seed=None)
        model.load_state_dict(load_file(str(d / "model.safetensors")))
        return model.eval()


def train_tiny_lm(lm: TinyCochlearGPT, tokenizer, audio, steps: int = 200, seq_len: int = 256, batch_size: int = 8,
                  lr: float = 3e-3, seed: int = 0, verbose: bool = False) -> list[float]:
    """Next-token training of ``lm`` on the tokens of ``audio`` (clips or a Corpus); returns the losses.

    ``tokenizer`` is anything with the WavCoch interface (e.g. a :class:`CochlearCodebook`).
    Windows of ``seq_len + 1`` tokens are sampled uniformly (seeded) from clips long enough.
    """
    seqs = [tokenizer(torch.from_numpy(a)[None, None], sample_rate=16000).input_ids[0] for a in _clips(audio)]
    seq_len = min(seq_len, lm.config.block_size, max(len(s) for s in seqs) - 1)
    seqs = [s for s in seqs if len(s) > seq_len]
    if seq_len < 1 or not seqs:
        raise ValueError("no clip is long enough to train on (need at least 2 tokens = 10 ms)")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    losses = []
    lm.train()
    try:
        from tqdm.auto import trange

        for _ in trange(steps, disable=not verbose, desc="train tiny LM"):
            which = torch.randint(len(seqs), (batch_size,), generator=gen)
            rows = []
            for i in which.tolist():
                start = int(torch.randint(len(seqs[i]) - seq_len, (1,), generator=gen))
                rows.append(seqs[i][start : start + seq_len + 1])
            batch = torch.stack(rows).to(next(lm.parameters()).device)
            logits = lm(batch[:, :-1]).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        lm.eval()
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError("tiny LM training diverged (non-finite loss); lower lr")
    return losses
