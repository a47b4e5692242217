"""HuBERT / wav2vec2 adapter (``facebook/hubert-base-ls960``, ``facebook/wav2vec2-base``, ...).

The transformer is hooked through TransformerLens 4.x: :class:`TransformerBridge` has
HuBERT and wav2vec2 architecture adapters, and ``boot_transformers(name, hf_model=model)``
wraps an already-built transformers model without touching the hub, so real checkpoints
and tiny random-init test models go through the same code. Our hook names are the
bridge's, prefixed so they say where in the model they live:

==================================  ================================  ======  =====================
hook point                          bridge hook                       rate    shape
==================================  ================================  ======  =====================
``feature_extractor.hook_conv_out``  ``feat_proj.hook_in``             50 Hz   [T, conv_dim[-1]]
``feature_projection.hook_out``      ``feat_proj.hook_out``            50 Hz   [T, hidden_size]
``encoder.layer_norm.hook_out``      ``embed_ln.hook_out``             50 Hz   [T, hidden_size]
``encoder.blocks.{i}.hook_attn_out`` ``blocks.{i}.hook_attn_out``      50 Hz   [T, hidden_size]
``encoder.blocks.{i}.hook_mlp_out``  ``blocks.{i}.hook_mlp_out``       50 Hz   [T, hidden_size]
``encoder.blocks.{i}.hook_resid_post`` ``blocks.{i}.hook_resid_post``  50 Hz   [T, hidden_size]
==================================  ================================  ======  =====================

(``feat_proj.hook_in`` is the CNN output already transposed to time-first, which is why it
stands for the conv stem rather than the channels-first ``audio_feature_extractor.hook_out``.
``encoder.layer_norm`` runs before the blocks in post-LN models such as hubert-base and after
them, as the final norm, in "stable layer norm" models such as hubert-large.)

Frames: the conv stem has stride 320 and a 400-sample receptive field, so ``n`` samples give
``floor((n - 400) / 320) + 1`` frames (0 below 400 samples). Clips longer than
``window_s`` are run in windows cut on frame boundaries, so the frame grid is the same as for
one long pass. The bridge rewires the transformers model in place (``save_pretrained`` no
longer works on it): save checkpoints before wrapping.

Batches: by default only equal-length clips share a forward pass, so a clip's activations are
bit-for-bit independent of what else is in its batch. ``pad_batches=True`` pads LayerNorm-stem
models (``feat_extract_norm="layer"``: hubert-large, wav2vec2-large-lv60) and passes an
attention mask: faster on a GPU, equal to about 1e-6. GroupNorm-stem models (hubert-base,
wav2vec2-base) normalise the first conv layer over time, so padding would change every real
frame: they always run equal-length clips only.

Example
-------
>>> from workbench.models import load
>>> model = load("facebook/hubert-base-ls960")                      # doctest: +SKIP
>>> acts = model.run_with_cache(audio, "encoder.blocks.*.hook_resid_post")  # doctest: +SKIP
>>> acts["encoder.blocks.6.hook_resid_post"].shape                  # [T, 768]  # doctest: +SKIP
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.conventions import FrameGrid, conv_grid
from workbench.models.base import AudioModel

#: our hook name -> TransformerBridge hook name ({i} = layer index)
_BRIDGE_NAMES = {
    "feature_extractor.hook_conv_out": "feat_proj.hook_in",
    "feature_projection.hook_out": "feat_proj.hook_out",
    "encoder.layer_norm.hook_out": "embed_ln.hook_out",
}
_BLOCK_HOOKS = ("hook_attn_out", "hook_mlp_out", "hook_resid_post")
SUPPORTED_MODEL_TYPES = ("hubert", "wav2vec2")


class HubModelUnavailableError(OSError):
    """A hub id that cannot be fetched here (offline / unreachable); says how to pass a local dir."""


def from_pretrained_or_explain(cls: Any, spec: str, **kwargs) -> Any:
    """``cls.from_pretrained(spec)``, re-raising hub failures with a message saying what to do.

    A spec that is not a local directory needs the Hugging Face hub (or its local cache);
    without it transformers raises a generic ``OSError``, which we turn into
    :class:`HubModelUnavailableError` naming the fix (download once, pass the directory).
    """
    try:
        return cls.from_pretrained(spec, **kwargs)
    except OSError as err:
        if Path(spec).is_dir():
            raise OSError(f"cannot load the model in local directory {spec!r}: {err}") from err
        raise HubModelUnavailableError(
            f"cannot load {spec!r}: the Hugging Face hub is unreachable (no network, or "
            f"HF_HUB_OFFLINE=1) and the model is not in the local Hugging Face cache. On a machine "
            f"with internet run `huggingface-cli download {spec} --local-dir DIR` (or "
            f"`hf download {spec} --local-dir DIR`), copy DIR here and pass the directory instead: "
            f"workbench.models.load('DIR'). (transformers said: {str(err).splitlines()[0]})"
        ) from err


def split_by_length(clips: list[np.ndarray]) -> list[list[int]]:
    """Indices of equal-length clips, grouped (first-seen order), for padding-free batches."""
    groups: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(len(clip), []).append(i)
    return list(groups.values())


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, str(dtype).replace("torch.", ""))


class HubertAudioModel(AudioModel):
    """HuBERT / wav2vec2 encoder behind the :class:`AudioModel` interface (see module docs).

    ``hf_model`` is a transformers ``HubertModel`` / ``Wav2Vec2Model``; ``processor`` a
    ``Wav2Vec2FeatureExtractor`` (per-clip normalisation and padding; a default one matching
    the config is built when None). ``window_s``: longest stretch of audio per forward pass.
    ``pad_batches``: batch clips of different lengths with padding + attention mask (LayerNorm-stem
    models only; see module docs).
    """

    sample_rate = 16000

    def __init__(
        self, hf_model: nn.Module, spec: str = "", processor: Any = None, window_s: float = 30.0,
        pad_batches: bool = False,
    ) -> None:
        super().__init__()
        from transformer_lens.model_bridge import TransformerBridge

        cfg = hf_model.config
        if cfg.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"{spec!r}: model_type {cfg.model_type!r} is not one of {SUPPORTED_MODEL_TYPES}")
        self.hf_model = hf_model.eval()
        self.spec = spec
        self.name = Path(spec).name if spec else cfg.model_type
        self.window_s = window_s
        self.processor = processor or _default_processor(cfg)
        self.sample_rate = int(getattr(self.processor, "sampling_rate", 16000))
        self.stride = math.prod(cfg.conv_stride)
        # receptive field of the conv stem: 1 + sum (k_i - 1) * (product of earlier strides)
        self.receptive_field = 1 + sum((k - 1) * math.prod(cfg.conv_stride[:i]) for i, k in enumerate(cfg.conv_kernel))
        self.pad_batches = pad_batches
        # boot_transformers(name, hf_model=...) wraps our model in place without loading
        # weights, but it still tries `AutoFeatureExtractor.from_pretrained(name)` (best
        # effort), which for a hub id means network retries (~50 s offline). We have our
        # processor already, so it gets an empty local directory as the name: that lookup
        # then fails at once without touching the network.
        with tempfile.TemporaryDirectory(prefix="workbench-bridge-") as no_processor_here:
            self.bridge = TransformerBridge.boot_transformers(
                no_processor_here,
                hf_model=self.hf_model,
                device=str(next(self.hf_model.parameters()).device),
                # random-init configs carry no `architectures`; the bridge picks its adapter by it
                hf_config_overrides={"architectures": [type(self.hf_model).__name__]},
            )
        self.bridge.cfg.model_name = self.name
        self.bridge.eval()
        # model order; encoder.layer_norm sits before the blocks (post-LN) or after them (pre-LN)
        names = {h: _BRIDGE_NAMES[h] for h in ("feature_extractor.hook_conv_out", "feature_projection.hook_out")}
        layer_norm = {"encoder.layer_norm.hook_out": _BRIDGE_NAMES["encoder.layer_norm.hook_out"]}
        if not cfg.do_stable_layer_norm:
            names.update(layer_norm)
        for i in range(cfg.num_hidden_layers):
            names.update({f"encoder.blocks.{i}.{h}": f"blocks.{i}.{h}" for h in _BLOCK_HOOKS})
        if cfg.do_stable_layer_norm:
            names.update(layer_norm)
        hook_dict = self.bridge.hook_dict
        missing = [b for b in names.values() if b not in hook_dict]
        if missing:
            raise RuntimeError(f"transformer-lens TransformerBridge lacks hook(s) {missing} for {self.name}")
        self._modules = {ours: hook_dict[theirs] for ours, theirs in names.items()}

    @property
    def equal_lengths_only(self) -> bool:
        """Whether only equal-length clips may share a pass (GroupNorm stems always; see module docs)."""
        return not self.pad_batches or self.hf_model.config.feat_extract_norm == "group"

    # --- AudioModel -----------------------------------------------------------------------------
    def hook_modules(self) -> dict[str, nn.Module]:
        return dict(self._modules)

    def frame_rate(self, hook: str) -> float:
        self.resolve_exact([hook])
        return self.sample_rate / self.stride

    frame_centre_rule = ("derived: conv stem (kernels, strides, no padding): frame i reads samples "
                         "[stride i, stride i + receptive_field), centred at 20 i + 12.47 ms for HuBERT/wav2vec2")

    def frame_grid(self, hook: str) -> FrameGrid:
        """Frame ``i`` is centred on the middle of its conv-stem receptive field, samples
        ``320 i .. 320 i + 399`` for the standard stem: ``i x 20 ms + 12.47 ms``."""
        self.resolve_exact([hook])
        cfg = self.hf_model.config
        return conv_grid([(int(k), int(s), 0) for k, s in zip(cfg.conv_kernel, cfg.conv_stride)],
                         FrameGrid(0.0, 1.0 / self.sample_rate))

    def n_frames(self, hook: str, n_samples: int) -> int:
        """``floor((n - receptive_field) / stride) + 1`` (0 when shorter than one receptive field)."""
        if n_samples < self.receptive_field:
            return 0
        return (n_samples - self.receptive_field) // self.stride + 1

    def _forward(self, audio: list[np.ndarray]) -> None:
        use_mask = not self.equal_lengths_only  # equal lengths: nothing is padded
        feats = self.processor(
            audio, sampling_rate=self.sample_rate, padding=True, return_tensors="pt", return_attention_mask=use_mask
        )
        kwargs = {"attention_mask": feats["attention_mask"].to(self.device)} if use_mask else {}
        self.bridge(feats["input_values"].to(self.device, self.dtype), **kwargs)

    def _run_batch(self, clips: list[np.ndarray], names: list[str]) -> list[dict[str, torch.Tensor]]:
        """Cut long clips into frame-aligned windows, batch what may share a pass, stitch back."""
        pieces, owner = [], []
        for ci, clip in enumerate(clips):
            for piece in self._windows(clip):
                pieces.append(piece)
                owner.append(ci)
        groups = split_by_length(pieces) if self.equal_lengths_only else [list(range(len(pieces)))]
        results: list[dict[str, torch.Tensor]] = [{}] * len(pieces)
        for idx in groups:
            for i, res in zip(idx, super()._run_batch([pieces[i] for i in idx], names)):
                results[i] = res
        out = []
        for ci, clip in enumerate(clips):
            parts = [results[i] for i in range(len(pieces)) if owner[i] == ci]
            out.append({n: torch.cat([p[n] for p in parts])[: self.n_frames(n, len(clip))] for n in names})
        return out

    def window_frames(self, hook: str, n_samples: int) -> list[int]:
        """Real frames of ``hook`` in each row of the forward passes over one clip, in the order they
        run (windows, grouped by length when batches must be padding-free): what a splice replaces."""
        self.resolve_exact([hook])
        pieces = self._windows(np.zeros(n_samples, dtype=np.float32))
        groups = split_by_length(pieces) if self.equal_lengths_only else [list(range(len(pieces)))]
        return [self.n_frames(hook, len(pieces[i])) for idx in groups for i in idx]

    def _windows(self, clip: np.ndarray) -> list[np.ndarray]:
        """Windows of ``window_s`` whose frames tile the clip's frame grid exactly.

        Window j covers frames [j*k, (j+1)*k): samples [j*k*stride, ((j+1)*k - 1)*stride + rf);
        the last one runs to the end of the clip.
        Clips shorter than one receptive field are zero-padded to it (and give 0 frames).
        """
        rf, stride = self.receptive_field, self.stride
        if len(clip) < rf:
            return [np.pad(clip, (0, rf - len(clip)))]
        total = (len(clip) - rf) // stride + 1
        k = max(1, int(self.window_s * self.sample_rate) // stride)
        starts = range(0, total, k)
        # the last window runs to the end of the clip: trailing samples that complete no frame
        # still count in the per-clip normalisation and GroupNorm statistics, as in one pass
        return [clip[f * stride : (f + k - 1) * stride + rf if f + k < total else len(clip)] for f in starts]

    def info(self) -> dict:
        return {**super().info(), "transformer_lens_bridge": True, "equal_length_batches": self.equal_lengths_only}


def _default_processor(config) -> Any:
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=config.feat_extract_norm == "layer",
    )


def load(spec: str, device: str = "cpu", dtype: torch.dtype | str | None = None) -> HubertAudioModel:
    """Load a HuBERT / wav2vec2 checkpoint (hub id or local dir) into a :class:`HubertAudioModel`.

    Offline, a hub id raises :class:`HubModelUnavailableError` explaining how to pass a local dir.
    """
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    config = from_pretrained_or_explain(AutoConfig, spec)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{spec!r} is a {config.model_type!r} model, not one of {SUPPORTED_MODEL_TYPES}")
    dtype = _as_dtype(dtype)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = from_pretrained_or_explain(AutoModel, spec, **kwargs).to(device)
    try:
        processor = AutoFeatureExtractor.from_pretrained(spec)
    except OSError:  # some checkpoints ship no preprocessor_config.json
        processor = None
    return HubertAudioModel(model, spec=spec, processor=processor)


def from_config(config, device: str = "cpu", dtype: torch.dtype | str | None = None, **kwargs) -> HubertAudioModel:
    """A random-init model from a ``HubertConfig`` / ``Wav2Vec2Config`` (tests, no weights needed)."""
    from transformers import HubertModel as HFHubertModel
    from transformers import Wav2Vec2Model

    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"config model_type {config.model_type!r} is not one of {SUPPORTED_MODEL_TYPES}")
    cls = HFHubertModel if config.model_type == "hubert" else Wav2Vec2Model
    model = cls(config).to(device)
    if dtype is not None:
        model = model.to(_as_dtype(dtype))
    return HubertAudioModel(model, spec=f"random-{config.model_type}", **kwargs)


#: tiny layouts for tests and demos: real conv stem (so real frame counts), tiny transformer
TINY_CONFIGS = {
    # hubert-base layout: GroupNorm conv stem (equal-length batches), post-LN transformer
    "hubert": dict(feat_extract_norm="group", do_stable_layer_norm=False),
    # wav2vec2-large-lv60 layout: LayerNorm conv stem (padded batches + mask), pre-LN transformer
    "wav2vec2": dict(feat_extract_norm="layer", do_stable_layer_norm=True),
}


def random_hubert(model_type: str = "hubert", seed: int = 0, pad_batches: bool = False, **overrides) -> HubertAudioModel:
    """A tiny random-init HuBERT / wav2vec2 (hidden 32, 2 layers, conv_dim 16): no weights needed.

    Standard conv kernels and strides, so frame counts are the real ones (50 Hz).
    ``overrides`` go to the transformers config.
    """
    from transformers import HubertConfig, Wav2Vec2Config

    if model_type not in TINY_CONFIGS:
        raise ValueError(f"model_type must be one of {sorted(TINY_CONFIGS)}, got {model_type!r}")
    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, **TINY_CONFIGS[model_type])
    cfg.update(overrides)
    config = (HubertConfig if model_type == "hubert" else Wav2Vec2Config)(**cfg)
    with torch.random.fork_rng():  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        return from_config(config, pad_batches=pad_batches)
