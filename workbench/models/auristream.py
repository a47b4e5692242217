"""AuriStream: cochlear tokens (WavCoch) -> causal GPT LM, as an :class:`AudioModel`.

The adapter composes *any* tokenizer with the WavCoch interface
(``tokenizer(wav[B, 1, T], sample_rate=16000)`` -> ``.input_ids`` (or ``.input_values`` /
``["input_ids"]``) ``[B, T // 80]``, 5 ms per token) with *any* LM with the AuriStream interface
(``lm(ids, output_hidden_states=True, return_dict=True).hidden_states``: index 0 = token +
position embeddings, entry ``i + 1`` = output of block ``i``, the last one before the final norm).

Hook points (all 200 frames/s, ``T = n_samples // 80``):

- ``tokens.hook_ids``: the integer tokens, ``[T, 1]`` int64 (an intervention may rewrite them);
- ``lm.hook_embed``: ``hidden_states[0]``;
- ``lm.blocks.{i}.hook_resid_post``: ``hidden_states[i + 1]``.

**Interventions.** The LM's transformer blocks are located (the ``nn.ModuleList`` whose length is
the number of layers) and checked once against ``hidden_states`` on a dry run. During a
forward pass a forward hook on block ``i`` routes its output through ``lm.blocks.{i}.hook_resid_post``
and a pre-hook on block 0 routes its input through ``lm.hook_embed``, so an edit there changes
everything downstream. If the blocks cannot be located (or the check fails) the adapter falls
back to reading ``hidden_states`` after the pass: caching still works, but interventions on
``lm.*`` hooks raise :class:`NotImplementedError` (pass ``blocks=`` to fix it).

**Batching and long inputs.** Clips are tokenized one at a time and batched only with clips
whose LM pass has the same shape, so activations never depend on batch mates. At most
``max_tokens`` (4096 = 20.48 s) tokens go through the LM per pass: longer sequences are cut into
consecutive windows (positions restart at 0), run as one batch and concatenated; interventions
see the whole clip as ``[B, n_windows * max_tokens, D]`` (end-padded).

Specs for :func:`load`:

- ``auristream-tiny`` (offline, nothing to download): a :class:`~workbench.models.cochlear_tokens.CochlearCodebook`
  (64 codes, k-means on seeded synthetic audio) + a random-init
  :class:`~workbench.models.cochlear_tokens.TinyCochlearGPT` (2 layers, width 64). Options as a
  query string: ``auristream-tiny?n_codes=256&n_layer=4&n_embd=128&n_head=4&seed=1&max_tokens=4096``,
  ``codebook=DIR`` (a saved codebook), ``codebook=speech-8192`` (the WavCoch-sized 8192-code LFQ
  codebook of :mod:`workbench.models.cochlear_lfq`, trained once offline and cached), ``lm=DIR`` (a saved tiny GPT).
- a local directory holding a saved ``TinyCochlearGPT`` (``config.json`` with ``model_type``
  ``tiny_cochlear_gpt``) and optionally its codebook (``codebook.json``).
- hub ids (need network and transformers<5, see below):
  ``TuKoResearch/AuriStream1B_librilight_ckpt500k``, ``TuKoResearch/AuriStream100M_40Pred_BigAudioDataset_500k``
  (LM; tokenizer ``TuKoResearch/WavCochV8192``, or ``WavCochCausalV8192`` for the BigAudioDataset
  models; override with ``?tokenizer=ID``), or ``TuKoResearch/WavCochV8192`` /
  ``TuKoResearch/WavCochCausalV8192`` alone (tokens only: hook ``tokens.hook_ids``).

**transformers 5.x.** The TuKoResearch remote code is reported to break on 5.x (it imports
names that moved, e.g. ``BatchEncoding`` from ``transformers.tokenization_utils``); a failed load
under 5.x raises :class:`TransformersVersionError` saying so: use an environment with
``pip install "transformers>=4.46,<5"`` for the hub models.

Example
-------
>>> import numpy as np
>>> from workbench.models import load
>>> model = load("auristream-tiny")                                # doctest: +SKIP
>>> acts = model.run_with_cache(np.zeros(16000, np.float32), "lm.blocks.*.hook_resid_post")  # doctest: +SKIP
>>> acts["lm.blocks.1.hook_resid_post"].shape                      # doctest: +SKIP
torch.Size([200, 64])
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import math
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import parse_qsl

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.models.base import AudioModel, HookFn, _first, _replace_first

__all__ = ["AuriStreamModel", "TransformersVersionError", "find_blocks", "load_remote", "load"]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_RATE = 200  # tokens per second (80 samples per token)
MAX_TOKENS = 4096
WAVCOCH = "TuKoResearch/WavCochV8192"
WAVCOCH_CAUSAL = "TuKoResearch/WavCochCausalV8192"


class TransformersVersionError(RuntimeError):
    """The hub remote code failed to load under transformers 5.x (it is written for 4.x)."""


def _transformers_version() -> str:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _transformers_major() -> int:
    return int(_transformers_version().split(".")[0])


def _from_pretrained(name: str) -> nn.Module:
    from transformers import AutoModel

    return AutoModel.from_pretrained(name, trust_remote_code=True)


def load_remote(name: str, what: str = "model") -> nn.Module:
    """``AutoModel.from_pretrained(name, trust_remote_code=True)`` with a clear error on transformers 5.x."""
    try:
        return _from_pretrained(name)
    except OSError as err:  # missing files, no network, unknown repo: not a version problem
        if _transformers_major() >= 5:
            err.add_note(f"Note: the remote code of {name!r} is also reported to need transformers<5 "
                         f"(installed: {_transformers_version()}).")
        raise
    except Exception as err:
        if _transformers_major() < 5:
            raise
        raise TransformersVersionError(
            f"loading the {what} {name!r} (trust_remote_code=True) failed under transformers "
            f"{_transformers_version()}: {type(err).__name__}: {err}\n"
            "The TuKoResearch WavCoch / AuriStream remote code is written for transformers 4.x and is "
            "reported to break on 5.x (it imports names that moved, e.g. BatchEncoding from "
            "transformers.tokenization_utils). Load the hub models from a separate environment with "
            "transformers<5 (`pip install \"transformers>=4.46,<5\"`). Offline, `workbench.models.load('auristream-tiny')` "
            "runs the same adapter on any transformers version."
        ) from err


def find_blocks(lm: nn.Module, n_layer: int | None = None) -> list[nn.Module] | None:
    """The LM's transformer blocks: the largest ``ModuleList``/``Sequential`` of one module type
    (of length ``n_layer`` when given). None if there is no such list."""
    best, best_size = None, -1
    for _, mod in lm.named_modules():
        if not isinstance(mod, (nn.ModuleList, nn.Sequential)) or len(mod) == 0:
            continue
        if n_layer is not None and len(mod) != n_layer:
            continue
        if len({type(m) for m in mod}) != 1:
            continue
        size = sum(p.numel() for p in mod.parameters())
        if size > best_size:
            best, best_size = list(mod), size
    return best


def _field(out, keys: tuple[str, ...], who: str):
    """``out.<key>`` or ``out[key]`` for the first key present (ModelOutput, dict or dataclass)."""
    for key in keys:
        val = getattr(out, key, None)
        if val is None and isinstance(out, Mapping):
            val = out.get(key)
        if val is not None:
            return val
    raise TypeError(f"{who} returned {type(out).__name__} without {' / '.join(keys)}")


def _hidden_states(out) -> tuple[torch.Tensor, ...]:
    return tuple(_field(out, ("hidden_states",), "the LM (called with output_hidden_states=True)"))


def _token_ids(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    return torch.as_tensor(_field(out, ("input_ids", "input_values"), "the tokenizer"))  # input_values: old WavCoch


class AuriStreamModel(AudioModel):
    """Tokenizer + causal LM adapter (see the module docstring).

    Parameters
    ----------
    tokenizer : WavCoch-style tokenizer (``nn.Module`` or any callable).
    lm : AuriStream-style LM, or None for a tokens-only model.
    max_tokens : tokens per LM pass; longer inputs are windowed.
    blocks : the LM's block modules, if :func:`find_blocks` cannot find them.
    """

    sample_rate = SAMPLE_RATE
    integer_hooks = frozenset({"tokens.hook_ids"})  # int64 tensors: cached exactly (AudioModel.integer_hooks)

    def __init__(self, tokenizer, lm: nn.Module | None = None, *, spec: str = "auristream", name: str | None = None,
                 max_tokens: int = MAX_TOKENS, blocks: list[nn.Module] | None = None, device: str = "cpu",
                 dtype=None) -> None:
        super().__init__()
        self.spec, self.name = spec, name or spec
        self.tokenizer, self.lm, self.max_tokens = tokenizer, lm, int(max_tokens)
        if isinstance(tokenizer, nn.Module):
            tokenizer.to(device).eval()
        self.hook_ids = nn.Identity()
        self._points: dict[str, nn.Module] = {"tokens.hook_ids": self.hook_ids}
        self._layout: tuple[int, int, int] | None = None
        self.blocks: list[nn.Module] | None = None
        if lm is None:
            return
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        lm.to(device=device, dtype=dtype).eval()
        n_layer, self.d_model = self._probe_lm()
        self._points["lm.hook_embed"] = nn.Identity()
        for i in range(n_layer):
            self._points[f"lm.blocks.{i}.hook_resid_post"] = nn.Identity()
        self.blocks = blocks if blocks is not None else find_blocks(lm, n_layer)
        if self.blocks is not None and not self._blocks_match():
            logger.warning("%s: the located blocks do not reproduce hidden_states; interventions on lm.* "
                           "hooks are disabled (pass blocks=...)", self.name)
            self.blocks = None

    # --- AudioModel ----------------------------------------------------------------------------
    def hook_modules(self) -> dict[str, nn.Module]:
        return dict(self._points)

    def frame_rate(self, hook: str) -> float:
        self.resolve_exact([hook])
        return float(FRAME_RATE)

    def n_frames(self, hook: str, n_samples: int) -> int:
        """Tokens are ``n_samples // 80`` (WavCoch drops a partial last token)."""
        return int(n_samples) * FRAME_RATE // self.sample_rate

    @property
    def device(self) -> torch.device:
        for module in (self.lm, self.tokenizer):
            if isinstance(module, nn.Module):
                for p in module.parameters():
                    return p.device
        return torch.device("cpu")

    @contextlib.contextmanager
    def hooks(self, fns: Mapping[str, HookFn]) -> Iterator[None]:
        if self.lm is not None and self.blocks is None:
            bad = [h for h in fns if h.startswith("lm.")]
            if bad:
                raise NotImplementedError(
                    f"{self.name}: the LM's blocks were not located, so {bad} can be cached but not intervened "
                    "on; build AuriStreamModel(..., blocks=[...]) with the LM's block modules")
        with super().hooks(fns):
            yield

    # --- forward ---------------------------------------------------------------------------
    def _run_batch(self, clips: list[np.ndarray], names: list[str]) -> list[dict[str, torch.Tensor]]:
        """Batch only clips whose LM passes have the same shape (same token count, or the same
        number of full windows), so a clip's activations do not depend on its batch mates."""
        groups: dict[int, list[int]] = {}
        for i, clip in enumerate(clips):
            n = len(clip) // (self.sample_rate // FRAME_RATE)
            groups.setdefault(n if n <= self.max_tokens else -math.ceil(n / self.max_tokens), []).append(i)
        out: list = [None] * len(clips)
        for idx in groups.values():
            for i, res in zip(idx, super()._run_batch([clips[i] for i in idx], names)):
                out[i] = res
        return out

    @torch.no_grad()
    def tokenize(self, clip: np.ndarray) -> torch.Tensor:
        """Tokens of one 16 kHz clip: int64 ``[n]`` (n = len(clip) // 80 for WavCoch)."""
        dev = torch.device("cpu")
        if isinstance(self.tokenizer, nn.Module):
            dev = next((p.device for p in self.tokenizer.parameters()), dev)
        wav = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)).to(dev)[None, None]
        ids = _token_ids(self.tokenizer(wav, sample_rate=self.sample_rate))
        return ids.reshape(-1).long().cpu()

    @torch.no_grad()
    def _forward(self, audio: list[np.ndarray]) -> None:
        seqs = [self.tokenize(a) for a in audio]
        n = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), n, dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = s
        ids = self.hook_ids(ids[..., None])[..., 0]
        if self.lm is None:
            return
        bsz = len(seqs)
        if n == 0:  # clips under 5 ms: no tokens, but every hook still reports [B, 0, D]
            empty = torch.zeros(bsz, 0, self.d_model)
            for name, point in self._points.items():
                if name != "tokens.hook_ids":
                    point(empty)
            return
        n_win = math.ceil(n / self.max_tokens)
        width = n if n_win == 1 else self.max_tokens
        windows = F.pad(ids, (0, n_win * width - n)).reshape(bsz * n_win, width).to(self.device)
        self._layout = (bsz, n_win, width)
        handles = self._attach() if self.blocks is not None else []
        try:
            out = self.lm(windows, output_hidden_states=True, return_dict=True)
            if self.blocks is None:  # fallback: report hidden_states after the pass
                for name, h in zip(self._lm_names(), _hidden_states(out)):
                    self._points[name](self._merge(h))
        finally:
            for h in handles:
                h.remove()
            self._layout = None

    def _lm_names(self) -> list[str]:
        return [n for n in self._points if n.startswith("lm.")]

    def _merge(self, act: torch.Tensor) -> torch.Tensor:
        """``[B * n_win, W, D]`` windows -> ``[B, n_win * W, D]`` per clip."""
        bsz, n_win, width = self._layout
        return act.reshape(bsz, n_win * width, act.shape[-1])

    def _attach(self) -> list:
        """Hooks that route block outputs (and block 0's input) through the hook points."""
        points = [self._points[n] for n in self._lm_names()]  # embed, block 0, block 1, ...

        def through(point: nn.Module, act: torch.Tensor) -> torch.Tensor | None:
            merged = self._merge(act)
            new = point(merged)
            return None if new is merged else new.reshape(act.shape)

        def pre(_module, args, kwargs):
            if args:
                new = through(points[0], args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            key = next((k for k in ("hidden_states", "x", "input", "inputs_embeds") if k in kwargs), None)
            if key is None:
                raise RuntimeError(f"{self.name}: cannot find block 0's input to apply lm.hook_embed")
            new = through(points[0], kwargs[key])
            return None if new is None else (args, {**kwargs, key: new})

        def post(point):
            def hook(_module, _args, output):
                new = through(point, _first(output))
                return None if new is None else _replace_first(output, new)

            return hook

        handles = [self.blocks[0].register_forward_pre_hook(pre, with_kwargs=True)]
        handles += [blk.register_forward_hook(post(p)) for blk, p in zip(self.blocks, points[1:])]
        return handles

    @torch.no_grad()
    def _probe_lm(self) -> tuple[int, int]:
        """Layers and width from a dry run on a few tokens."""
        hs = _hidden_states(self.lm(torch.zeros(1, 4, dtype=torch.long, device=self.device),
                                    output_hidden_states=True, return_dict=True))
        return len(hs) - 1, hs[0].shape[-1]

    @torch.no_grad()
    def _blocks_match(self) -> bool:
        """Do the located blocks' outputs (and block 0's input) equal hidden_states[1:] (and [0])?"""
        if len(self.blocks) != len(self._lm_names()) - 1:
            return False
        seen: dict[int, torch.Tensor] = {}
        handles = [blk.register_forward_hook(lambda _m, _a, o, i=i: seen.__setitem__(i, _first(o)))
                   for i, blk in enumerate(self.blocks)]
        handles.append(self.blocks[0].register_forward_pre_hook(
            lambda _m, a, k: seen.__setitem__(-1, a[0] if a else next(iter(k.values()))), with_kwargs=True))
        ids = torch.arange(6, device=self.device)[None] % 2
        try:
            hs = _hidden_states(self.lm(ids, output_hidden_states=True, return_dict=True))
        finally:
            for h in handles:
                h.remove()
        want = [hs[0], *hs[1:-1]]  # the last entry may come after a final norm in some LMs
        got = [seen.get(-1), *[seen.get(i) for i in range(len(self.blocks) - 1)]]
        return all(g is not None and g.shape == w.shape and torch.allclose(g, w, atol=1e-5) for g, w in zip(got, want))


# --- specs -----------------------------------------------------------------------------------
def _parse(spec: str) -> tuple[str, dict[str, str]]:
    base, _, query = spec.partition("?")
    return base, dict(parse_qsl(query))


def _tiny(opts: dict[str, str], spec: str, device: str, dtype, local: Path | None = None) -> AuriStreamModel:
    from workbench.models.cochlear_tokens import CochlearCodebook, TinyCochlearGPT, TinyGPTConfig, synthetic_corpus

    seed = int(opts.get("seed", 0))
    cb_dir = opts.get("codebook") or (str(local) if local and (local / "codebook.json").is_file() else None)
    if cb_dir == "speech-8192":  # the WavCoch-sized LFQ codebook, trained once offline and cached
        from workbench.models.cochlear_lfq import speech_codebook

        codebook = speech_codebook()
    elif cb_dir:
        codebook = CochlearCodebook.load(cb_dir)
    else:
        codebook = CochlearCodebook(n_codes=int(opts.get("n_codes", 64)), seed=seed, n_init=1, max_iter=20)
        codebook.fit(synthetic_corpus(n_clips=8, seconds=1.0, seed=seed))
    lm_dir = opts.get("lm") or (str(local) if local else None)
    max_tokens = int(opts.get("max_tokens", MAX_TOKENS))
    if lm_dir:
        lm = TinyCochlearGPT.load(lm_dir)
    else:
        cfg = TinyGPTConfig(vocab_size=codebook.n_codes, n_layer=int(opts.get("n_layer", 2)),
                            n_head=int(opts.get("n_head", 2)), n_embd=int(opts.get("n_embd", 64)), block_size=max_tokens)
        lm = TinyCochlearGPT(cfg, seed=seed)
    if lm.config.vocab_size < codebook.n_codes:
        raise ValueError(f"{spec}: the LM's vocabulary ({lm.config.vocab_size}) is smaller than the codebook "
                         f"({codebook.n_codes} codes)")
    return AuriStreamModel(codebook, lm, spec=spec, name="auristream-tiny", device=device, dtype=dtype,
                           max_tokens=min(max_tokens, lm.config.block_size))


def load(spec: str, device: str = "cpu", dtype=None) -> AuriStreamModel:
    """Build the AuriStream adapter for ``spec`` (see the module docstring for the forms)."""
    base, opts = _parse(spec)
    local = Path(base)
    if base.lower() in ("auristream-tiny", "auristream_tiny"):
        return _tiny(opts, spec, device, dtype)
    if (local / "config.json").is_file():
        model_type = json.loads((local / "config.json").read_text()).get("model_type")
        if model_type == "tiny_cochlear_gpt":
            return _tiny(opts, spec, device, dtype, local=local)
    max_tokens = int(opts.get("max_tokens", MAX_TOKENS))
    if "wavcoch" in base.lower() and "auristream" not in base.lower():
        return AuriStreamModel(load_remote(base, "tokenizer"), None, spec=spec, device=device)
    tok_id = opts.get("tokenizer") or (WAVCOCH_CAUSAL if "bigaudiodataset" in base.lower() else WAVCOCH)
    tokenizer = load_remote(tok_id, "tokenizer")
    lm = load_remote(base, "language model")
    return AuriStreamModel(tokenizer, lm, spec=spec, device=device, dtype=dtype, max_tokens=max_tokens)
