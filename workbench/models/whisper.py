"""Whisper adapter: transformers ``WhisperForConditionalGeneration`` behind :class:`AudioModel`.

Hook points (TransformerLens names), each ``[T, D]`` with D = d_model:

- ``encoder.hook_conv_out``: conv stem output after the GELU, *before* the positional
  embedding is added (read as block 0's input minus the sinusoid table; an edit replaces
  it, so block 0 sees edit + positions; an unchanged value leaves the stream bit-exact);
- ``encoder.blocks.{i}.hook_resid_pre | hook_attn_out | hook_mlp_out | hook_resid_post``:
  block input, self-attention output (after out_proj), MLP output (fc2), block output;
- ``encoder.ln_post.hook_normalized``: the final encoder output (after the last LayerNorm);
- ``decoder.blocks.{i}.hook_resid_pre | hook_attn_out | hook_cross_attn_out | hook_mlp_out |
  hook_resid_post`` and ``decoder.ln_final.hook_normalized`` (input of the unembedding).

Encoder hooks run at 50 frames/s; Whisper pads every window to 30 s and the padding is cut
from what :meth:`run_with_cache` returns (real frames = ceil(samples / 320)); longer clips
are run in 30 s windows, several windows (of one or many clips) per forward.

Decoder hooks are per *token*, not time based: :meth:`run_with_cache` decodes greedily and
returns ``[n_tokens, D]`` per clip, row ``i`` being the state at input token ``i`` of
``model.last_tokens[clip]`` (prompt + generated tokens incl. the final end-of-text; it
predicts token ``i + 1``). ``frame_rate``/``frame_times`` raise for decoder hooks.

Example
-------
>>> model = workbench.models.load("whisper-tiny.en")                        # doctest: +SKIP
>>> acts = model.run_with_cache(audio, "encoder.blocks.*.hook_resid_post")  # doctest: +SKIP
>>> model.transcribe(audio, interventions={"encoder.blocks.2.hook_mlp_out": lambda a: 2 * a})  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import logging as hf_logging

from workbench.conventions import FrameGrid, conv_grid, stft_grid
from workbench.models.base import AudioLike, AudioModel, HookFn, _as_numpy, _first, _replace_first

logger = logging.getLogger(__name__)

#: hub ids whose real weights also ship offline as a CTranslate2 export (see ct2_import)
HUB_TO_OFFLINE = {"openai/whisper-tiny.en": "whisper-tiny.en", "openai/whisper-base": "whisper-base"}
DEFAULT_MAX_NEW_TOKENS = 224  # openai-whisper's sample_len (half the text context)


@dataclass(frozen=True)
class _Site:
    """Where a hook point lives: a module's ``output``, its ``input``, or the conv stem (``conv``)."""

    module: nn.Module
    kind: str = "output"


class WhisperModel(AudioModel):
    """A Whisper checkpoint with TransformerLens-style hook points (see module docstring)."""

    max_window_s = 30.0

    def __init__(self, hf_model, feature_extractor, tokenizer=None, spec: str = "", batch_size: int = 8):
        super().__init__()
        self.hf = hf_model.eval()
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = Path(spec).name if spec else "whisper"
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.batch_size = batch_size
        self.last_tokens: list[torch.Tensor] = []
        #: greedy decoding budget per 30 s window (transcribe and decoder-hook caching)
        self.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
        cfg = hf_model.config
        self.d_model = int(cfg.d_model)
        conv = hf_model.model.encoder.conv1.stride[0] * hf_model.model.encoder.conv2.stride[0]
        self._encoder_rate = self.sample_rate / (feature_extractor.hop_length * conv)
        self._sites = self._build_sites()

    # --- hook points ------------------------------------------------------------------------
    def _build_sites(self) -> dict[str, _Site]:
        enc, dec = self.hf.model.encoder, self.hf.model.decoder
        sites = {"encoder.hook_conv_out": _Site(enc.layers[0], "conv")}
        for stack, layers, norm in (("encoder", enc.layers, "ln_post"), ("decoder", dec.layers, "ln_final")):
            for i, layer in enumerate(layers):
                p = f"{stack}.blocks.{i}"
                sites[f"{p}.hook_resid_pre"] = _Site(layer, "input")
                sites[f"{p}.hook_attn_out"] = _Site(layer.self_attn)
                if stack == "decoder":
                    sites[f"{p}.hook_cross_attn_out"] = _Site(layer.encoder_attn)
                sites[f"{p}.hook_mlp_out"] = _Site(layer.fc2)
                sites[f"{p}.hook_resid_post"] = _Site(layer)
            sites[f"{stack}.{norm}.hook_normalized"] = _Site((enc if stack == "encoder" else dec).layer_norm)
        return sites

    def hook_modules(self) -> dict[str, nn.Module]:
        """Hook name -> module. ``hook_resid_pre`` / ``hook_conv_out`` are read at the *input*
        of the returned block, so use :meth:`hooks` rather than plain forward hooks on them."""
        return {name: site.module for name, site in self._sites.items()}

    @staticmethod
    def is_decoder_hook(hook: str) -> bool:
        return hook.startswith("decoder.")

    def frame_rate(self, hook: str) -> float:
        self.resolve_exact([hook])
        if self.is_decoder_hook(hook):
            raise ValueError(f"{hook} is a decoder hook: one row per decoded token, not a time-based frame rate")
        return self._encoder_rate

    frame_centre_rule = ("derived: centred log-mel STFT (frame j on sample j x hop) through conv1/conv2 "
                         "(kernel, stride, padding): encoder frame i centred at i x 20 ms")

    def frame_grid(self, hook: str) -> FrameGrid:
        """Encoder frame ``i`` is centred at ``i x 20 ms``: mel frame ``j`` of the centred STFT sits on
        sample ``j x hop``; the symmetric padded convs keep the centre and double the hop. (Frame 40
        of tiny.en reads 0.7675-0.8325 s of audio, centre 0.800 s.) Raises for decoder hooks."""
        self.frame_rate(hook)  # the decoder-hook error
        enc = self.hf.model.encoder
        mel = stft_grid(int(self.feature_extractor.hop_length), self.sample_rate, center=True)
        return conv_grid([(c.kernel_size[0], c.stride[0], c.padding[0]) for c in (enc.conv1, enc.conv2)], mel)

    def info(self) -> dict:
        """Summary for ``workbench models info`` (decoder hooks have rate ``None``: per token)."""
        cfg = self.hf.config
        return {"name": self.name, "spec": self.spec, "sample_rate": self.sample_rate, "d_model": self.d_model,
                "encoder_layers": int(cfg.encoder_layers), "decoder_layers": int(cfg.decoder_layers),
                "vocab_size": int(cfg.vocab_size), "multilingual": self.is_multilingual,
                "hook_points": {h: None if self.is_decoder_hook(h) else self._encoder_rate for h in self.hook_points}}

    # --- interventions and capture ----------------------------------------------------------
    @contextlib.contextmanager
    def hooks(self, fns: Mapping[str, HookFn]) -> Iterator[None]:
        """``with model.hooks({hook: fn}):`` edits apply to every forward inside, including each
        step of :meth:`transcribe` (encoder hooks once per window, decoder hooks per token)."""
        names = self.resolve_exact(fns)
        with self._attached({n: fns[n] for n in names}):
            yield

    @contextlib.contextmanager
    def _attached(self, fns: Mapping[str, HookFn]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for name, fn in fns.items():
                stack.callback(self._attach(self._sites[name], fn).remove)
            yield

    def _attach(self, site: _Site, fn: HookFn):
        if site.kind == "output":
            def out_hook(_module, _inputs, output):
                act = _first(output)
                new = fn(act)
                return None if new is act else _replace_first(output, new)

            return site.module.register_forward_hook(out_hook)

        pos = self.hf.model.encoder.embed_positions.weight

        def pre_hook(_module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            # the conv output is only visible summed with the positions (x = conv + pos)
            act = x - pos[: x.shape[1]] if site.kind == "conv" else x
            new = fn(act)
            if new is act or (site.kind == "conv" and torch.equal(new, act)):
                return None  # unchanged: keep x itself, as (x - pos) + pos may differ in the last bit
            new = new + pos[: x.shape[1]] if site.kind == "conv" else new
            return ((new, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": new})

        return site.module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    # --- forward passes ---------------------------------------------------------------------
    @property
    def is_multilingual(self) -> bool:
        return bool(getattr(self.hf.generation_config, "is_multilingual", False))

    def _features(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        feats = self.feature_extractor(
            [np.asarray(c, dtype=np.float32) for c in clips], sampling_rate=self.sample_rate, return_tensors="pt"
        ).input_features
        return feats.to(self.device, self.hf.dtype)

    def _forward(self, audio: list[np.ndarray]) -> None:
        self.hf.model.encoder(self._features(audio))

    def _windows(self, clips: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        """Split clips into <= 30 s windows; returns (windows, owning clip index)."""
        win = int(self.max_window_s * self.sample_rate)
        pieces, owner = [], []
        for ci, clip in enumerate(clips):
            for start in range(0, max(len(clip), 1), win):
                pieces.append(clip[start : start + win])
                owner.append(ci)
        return pieces, owner

    @torch.no_grad()
    def run_with_cache(
        self, audio: AudioLike | Sequence[AudioLike], hooks: str | Sequence[str]
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """``{hook: Tensor[T, D]}`` per clip (see module docstring for decoder hooks).

        All 30 s windows of all clips are batched ``batch_size`` at a time.
        """
        single, clips = _clips(audio)
        names = self.resolve_hooks(hooks) if isinstance(hooks, str) else self.resolve_exact(list(hooks))
        pieces, owner = self._windows(clips)
        per_piece, tokens = [], []
        for b in range(0, len(pieces), self.batch_size):
            per_piece += self._run_batch(pieces[b : b + self.batch_size], names)
            tokens += self._batch_tokens
        out, self.last_tokens = [], []
        for ci in range(len(clips)):
            idx = [i for i, o in enumerate(owner) if o == ci]
            out.append({h: torch.cat([per_piece[i][h] for i in idx], dim=0) for h in names})
            if tokens:
                self.last_tokens.append(torch.cat([tokens[i] for i in idx]))
        return out[0] if single else out

    def _run_batch(self, clips: list[np.ndarray], names: list[str]) -> list[dict[str, torch.Tensor]]:
        enc_names = [n for n in names if not self.is_decoder_hook(n)]
        dec_names = [n for n in names if self.is_decoder_hook(n)]
        captured: dict[str, torch.Tensor] = {}

        def capture(name: str) -> HookFn:
            def fn(act: torch.Tensor) -> torch.Tensor:
                captured[name] = act.detach()
                return act
            return fn

        with self._attached({n: capture(n) for n in enc_names}):
            enc = self.hf.model.encoder(self._features(clips)).last_hidden_state
        self._batch_tokens = []
        if dec_names:
            self._batch_tokens = self._generate(encoder_hidden=enc)
            ids = pad_sequence(self._batch_tokens, batch_first=True, padding_value=self._eot)
            with self._attached({n: capture(n) for n in dec_names}):  # causal: padding cannot leak back
                self.hf.model.decoder(input_ids=ids.to(enc.device), encoder_hidden_states=enc, use_cache=False)
        result = []
        for b, clip in enumerate(clips):
            row = {n: captured[n][b][: self.n_frames(n, len(clip))] for n in enc_names}
            row.update({n: captured[n][b][: len(self._batch_tokens[b])] for n in dec_names})
            result.append({n: row[n] for n in names})
        return result

    # --- decoding ---------------------------------------------------------------------------
    @property
    def _eot(self) -> int:
        eos = self.hf.generation_config.eos_token_id
        return int(eos[0] if isinstance(eos, (list, tuple)) else eos)

    def prompt_ids(self, language: str = "en") -> list[int]:
        """Decoder prompt used for greedy decoding: <|startoftranscript|> [lang task] <|notimestamps|>."""
        gen = self.hf.generation_config
        ids = [int(gen.decoder_start_token_id)]
        if self.is_multilingual:
            ids += [gen.lang_to_id[f"<|{language}|>"], gen.task_to_id["transcribe"]]
        if getattr(gen, "no_timestamps_token_id", None) is not None:
            ids.append(int(gen.no_timestamps_token_id))
        return ids

    def _generate(self, features=None, encoder_hidden=None, max_new_tokens=None, language="en"):
        """Greedy decoding; returns per window the full token sequence (prompt + new, up to EOT)."""
        gen = self.hf.generation_config
        prompt = self.prompt_ids(language)
        limit = int(self.hf.config.max_target_positions) - len(prompt)
        suppress = _SuppressTokens(gen.suppress_tokens, gen.begin_suppress_tokens, begin_index=len(prompt))
        kwargs = dict(num_beams=1, do_sample=False, max_new_tokens=min(max_new_tokens or self.max_new_tokens, limit),
                      max_length=None, suppress_tokens=None, begin_suppress_tokens=None,
                      logits_processor=LogitsProcessorList([suppress]))
        if self.is_multilingual:  # without language + task the multilingual decoder loops
            kwargs.update(language=language, task="transcribe")
        if encoder_hidden is not None:
            kwargs["encoder_outputs"] = BaseModelOutput(last_hidden_state=encoder_hidden)
        else:
            kwargs["input_features"] = features
        with _quiet_transformers():  # its generate warns about its own internal kwargs
            new = self.hf.generate(**kwargs)
        if not isinstance(new, torch.Tensor):
            new = new["sequences"]
        new = new.cpu()
        if new.shape[1] >= len(prompt) and new[0, : len(prompt)].tolist() == prompt:
            new = new[:, len(prompt) :]  # some transformers versions return the prompt too
        ends = [(row == self._eot).nonzero() for row in new]
        rows = [row[: int(e[0]) + 1] if len(e) else row for row, e in zip(new, ends)]
        return [torch.cat([torch.tensor(prompt, dtype=torch.long), row]) for row in rows]

    @torch.no_grad()
    def generate_ids(self, audio: AudioLike | Sequence[AudioLike], max_new_tokens: int | None = None,
                     language: str = "en") -> list[torch.Tensor]:
        """Greedy token ids per clip (windows concatenated), each window as prompt + text + EOT."""
        _, clips = _clips(audio)
        pieces, owner = self._windows(clips)
        seqs = []
        for b in range(0, len(pieces), self.batch_size):
            seqs += self._generate(self._features(pieces[b : b + self.batch_size]), None, max_new_tokens, language)
        return [torch.cat([s for s, o in zip(seqs, owner) if o == ci]) for ci in range(len(clips))]

    def transcribe(self, audio: AudioLike | Sequence[AudioLike], interventions: Mapping[str, HookFn] | None = None,
                   max_new_tokens: int | None = None, language: str = "en") -> str | list[str]:
        """Greedy transcript of one clip (``str``) or a list of clips (``list[str]``).

        ``interventions`` (``{hook: fn}``) apply inside generation: encoder hooks once per 30 s
        window, decoder hooks at every step (on ``[B, 1, D]`` with the KV cache). Clips over
        30 s are transcribed window by window and the texts joined.
        """
        if self.tokenizer is None:
            raise RuntimeError(f"{self.name}: no tokenizer was loaded, so token ids cannot become text")
        single, clips = _clips(audio)
        with self.hooks(interventions or {}):
            seqs = self.generate_ids(clips, max_new_tokens, language)
        texts = [self.tokenizer.decode(s, skip_special_tokens=True).strip() for s in seqs]
        return texts[0] if single else texts

    @property
    def no_speech_token_id(self) -> int | None:
        """Id of ``<|nospeech|>`` (``<|nocaptions|>`` in the older English-only vocabularies)."""
        tok = self.tokenizer
        if tok is None:
            return None
        for name in ("<|nospeech|>", "<|nocaptions|>"):
            i = tok.convert_tokens_to_ids(name)
            if i is not None and i != tok.unk_token_id and i != self._eot:
                return int(i)
        return None

    @torch.no_grad()
    def transcribe_scored(self, audio: AudioLike | Sequence[AudioLike], language: str = "en",
                          no_speech_id: int | None = None) -> list[list[dict]]:
        """Greedy decoding with openai-whisper's no-speech statistics, per clip a list of 30 s windows:
        ``{"text", "no_speech_prob", "avg_logprob"}``. ``no_speech_prob`` is p(``<|nospeech|>``) at the
        start-of-transcript position; ``avg_logprob`` sums the (suppression-masked) log-probabilities of
        the generated tokens incl. end-of-text over their count, as openai-whisper's decoder does.
        Active :meth:`hooks` apply to both the decoding and the scoring forward."""
        nsid = self.no_speech_token_id if no_speech_id is None else no_speech_id
        if nsid is None:
            raise RuntimeError(f"{self.name}: no <|nospeech|> token known; pass no_speech_id")
        _, clips = _clips(audio)
        pieces, owner = self._windows(clips)
        prompt, gen = self.prompt_ids(language), self.hf.generation_config
        windows = []
        for b in range(0, len(pieces), self.batch_size):
            enc = self.hf.model.encoder(self._features(pieces[b : b + self.batch_size])).last_hidden_state
            seqs = self._generate(encoder_hidden=enc, language=language)
            ids = pad_sequence(seqs, batch_first=True, padding_value=self._eot).to(enc.device)
            logits = self.hf(encoder_outputs=(enc,), decoder_input_ids=ids, use_cache=False).logits.float()
            no_speech = logits[:, 0].softmax(-1)[:, nsid]  # raw logits at <|startoftranscript|>, as openai-whisper
            if gen.suppress_tokens:
                logits[:, :, list(gen.suppress_tokens)] = -float("inf")
            for i, seq in enumerate(seqs):
                new = seq[len(prompt):].to(logits.device)
                lp = logits[i, len(prompt) - 1 : len(seq) - 1]
                if gen.begin_suppress_tokens and len(new):
                    lp[0, list(gen.begin_suppress_tokens)] = -float("inf")
                lp = lp.log_softmax(-1).gather(-1, new[:, None]).sum()
                text = self.tokenizer.decode(seq, skip_special_tokens=True).strip() if self.tokenizer else ""
                windows.append({"text": text, "no_speech_prob": float(no_speech[i]),
                                "avg_logprob": float(lp) / max(len(new), 1), "tokens": seq.tolist()})
        return [[w for w, o in zip(windows, owner) if o == ci] for ci in range(len(clips))]

    def encoder_output(self, audio: AudioLike) -> torch.Tensor:
        """Final encoder states ``[T, D]`` of one clip, padding removed."""
        return self.run_with_cache(audio, ["encoder.ln_post.hook_normalized"])["encoder.ln_post.hook_normalized"]

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, spec: str | None = None, device="cpu", dtype=None):
        """Load a transformers Whisper checkpoint (hub id or local dir)."""
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

        hf = WhisperForConditionalGeneration.from_pretrained(str(path_or_id), dtype=_torch_dtype(dtype))
        features = WhisperFeatureExtractor.from_pretrained(str(path_or_id))
        try:  # acoustic analyses work without a tokenizer; only transcribe() needs one
            tokenizer = WhisperTokenizer.from_pretrained(str(path_or_id))
        except (OSError, ValueError):
            tokenizer = None
        if tokenizer is None or len(tokenizer) < 2:  # a dir without tokenizer files loads as an empty one
            logger.warning("%s: no tokenizer found; transcribe() is unavailable", path_or_id)
            tokenizer = None
        return cls(hf.to(device), features, tokenizer, spec=spec or str(path_or_id))


class _SuppressTokens(LogitsProcessor):
    """Whisper's suppress / begin-suppress rules by indexing (transformers' ``isin`` over the
    vocabulary costs ~20 ms per step on CPU, a third of tiny.en's decoding time)."""

    def __init__(self, always, at_begin, begin_index: int):
        self.always = torch.tensor(sorted(always or []), dtype=torch.long)
        self.at_begin = torch.tensor(sorted(at_begin or []), dtype=torch.long)
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if len(self.always):
            scores = scores.index_fill(1, self.always.to(scores.device), -float("inf"))
        if len(self.at_begin) and input_ids.shape[-1] == self.begin_index:
            scores = scores.index_fill(1, self.at_begin.to(scores.device), -float("inf"))
        return scores


@contextlib.contextmanager
def _quiet_transformers():
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _clips(audio) -> tuple[bool, list[np.ndarray]]:
    """(single clip?, list of float32 mono clips) for one clip or a list of clips."""
    single = isinstance(audio, (np.ndarray, torch.Tensor)) and np.ndim(audio) == 1
    return single, [_as_numpy(a) for a in ([audio] if single else audio)]


def _torch_dtype(dtype) -> torch.dtype:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype or torch.float32
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if str(dtype) not in names:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(names)}")
    return names[str(dtype)]


def load(spec: str, device: str = "cpu", dtype=None) -> WhisperModel:
    """Offline aliases (``whisper-tiny.en``, ``whisper-base``) or any hub id / local dir."""
    from workbench.models import ct2_import

    if spec in ct2_import.OFFLINE_SOURCES:
        path = ct2_import.ensure_checkpoint(spec)
        return WhisperModel.from_pretrained(path, spec=spec, device=device, dtype=dtype)
    try:
        return WhisperModel.from_pretrained(spec, device=device, dtype=dtype)
    except OSError as e:
        alias = HUB_TO_OFFLINE.get(spec)
        if alias and ct2_import.is_available(alias):
            logger.warning("could not load %s from the hub (%s); using the offline export %r", spec, e, alias)
            return load(alias, device=device, dtype=dtype)
        raise RuntimeError(
            f"could not load Whisper {spec!r} ({e}). Offline, use one of {sorted(ct2_import.OFFLINE_SOURCES)}"
        ) from e


def random_whisper(seed: int = 0, **overrides) -> WhisperModel:
    """A tiny random-init Whisper (d_model 64, 2+2 layers, 96-token vocab): no weights needed.

    For tests and demos; real Whisper shapes everywhere except the sizes. Token ids:
    90 end-of-text, 91 start-of-transcript, 92 no-timestamps; no tokenizer.
    """
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    cfg = dict(vocab_size=96, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
               decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=1500,
               max_target_positions=32, decoder_start_token_id=91, bos_token_id=90, eos_token_id=90,
               pad_token_id=90, suppress_tokens=None, begin_suppress_tokens=None)
    cfg.update(overrides)
    with torch.random.fork_rng():  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        hf = WhisperForConditionalGeneration(WhisperConfig(**cfg))
    hf.generation_config = GenerationConfig(
        decoder_start_token_id=91, bos_token_id=90, eos_token_id=90, pad_token_id=90, no_timestamps_token_id=92,
        max_length=cfg["max_target_positions"], is_multilingual=False, return_timestamps=False)
    return WhisperModel(hf, WhisperFeatureExtractor(feature_size=hf.config.num_mel_bins), spec="random-whisper")
