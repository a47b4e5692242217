"""Neural audio codec encoders: EnCodec, DAC and Mimi (transformers implementations).

``facebook/encodec_24khz`` (transformers ``EncodecModel``), ``descript/dac_16khz``
(``DacModel``) and ``kyutai/mimi`` (``MimiModel``), or any local directory / config of those
types. TransformerLens has no bridge for these convolutional codecs, so they are hooked with
plain forward hooks under TransformerLens-style names:

==========================================  ==================================  ===========================
hook point                                  what                                frame rate
==========================================  ==================================  ===========================
``encoder.blocks.{i}.hook_out``             output of encoder stage i (after    sample_rate / cumulative
                                            its strided conv)                   stride of stages 0..i
``encoder.hook_out`` (Mimi)                 SEANet output, transformer input    sample_rate / hop (25 Hz)
``encoder_transformer.blocks.{i}.hook_*``   Mimi transformer layer i:           25 Hz
                                            ``hook_attn_out``, ``hook_mlp_out``
                                            (after layer scale), ``hook_resid_post``
``hook_latent``                             pre-quantisation latent             EnCodec 24 kHz: 75 Hz,
                                                                                DAC 16 kHz: 50 Hz,
                                                                                Mimi: 12.5 Hz
``quantizer.hook_codes``                    RVQ codes, int64 ``[T, n_codebooks]`` same as ``hook_latent``
==========================================  ==================================  ===========================

Convolution outputs are channels-first inside the models; each is routed through a
TransformerLens ``HookPoint`` as a time-first view, so caches get ``[T, D]`` and interventions
receive and return ``[B, T, D]`` like every other adapter (the transposes are views, so an
identity intervention is bit-identical). ``quantizer.hook_codes`` is not a module of the
model: a small module quantises the (possibly edited) latent, and only runs when that hook is
requested or intervened on. All codebooks are used unless ``n_codebooks`` is set.

Frames: every strided conv pads so that ``n`` samples give ``ceil(n / stride)`` frames
(DAC's convs floor instead, so clips are zero-padded to a multiple of its hop length, as its
feature extractor does). Padding changes the last frames of a clip (reflect padding, non-causal
receptive fields), so only equal-length clips share a forward pass: a clip's activations never
depend on its batch. EnCodec's chunked configs (48 kHz) are encoded as one chunk over the whole
clip, which keeps one frame grid (the official ``encode`` overlaps 1 s chunks).

Example
-------
>>> from workbench.models import load
>>> codec = load("facebook/encodec_24khz")                                # doctest: +SKIP
>>> out = codec.run_with_cache(audio_24k, ["hook_latent", "quantizer.hook_codes"])  # doctest: +SKIP
>>> out["quantizer.hook_codes"].shape       # [T, 32] int64, T = ceil(len / 320)    # doctest: +SKIP
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from workbench.models.base import AudioModel
from workbench.models.hubert import _as_dtype, from_pretrained_or_explain, split_by_length

SUPPORTED_MODEL_TYPES = ("encodec", "dac", "mimi")


def _time_first_hook(module: nn.Module) -> nn.Module:
    """A HookPoint that sees ``module``'s channels-first output as ``[B, T, C]`` (and may replace it)."""
    from transformer_lens.hook_points import HookPoint

    point = HookPoint()

    def route(_module, _inputs, output):
        return point(output.transpose(1, 2)).transpose(1, 2)

    module.register_forward_hook(route)
    return point


class _Codes(nn.Module):
    """Quantises a channels-first latent ``[B, D, T]`` into codes ``[B, T, K]`` (a hookable module)."""

    def __init__(self, quantize: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.quantize = quantize

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.quantize(latent).to(torch.int64)


class CodecAudioModel(AudioModel):
    """Codec encoder behind the :class:`AudioModel` interface (see module docs).

    ``hf_model``: a transformers ``EncodecModel``, ``DacModel`` or ``MimiModel``.
    ``n_codebooks``: codebooks in ``quantizer.hook_codes`` (default: all of them).
    """

    integer_hooks = frozenset({"quantizer.hook_codes"})  # int64 tensors: cached exactly (AudioModel.integer_hooks)

    def __init__(self, hf_model: nn.Module, spec: str = "", n_codebooks: int | None = None) -> None:
        super().__init__()
        cfg = hf_model.config
        self.kind = cfg.model_type
        if self.kind not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"{spec!r}: model_type {self.kind!r} is not one of {SUPPORTED_MODEL_TYPES}")
        self.hf_model = hf_model.eval()
        self.spec = spec
        self.name = Path(spec).name if spec else self.kind
        self.sample_rate = int(cfg.sampling_rate)
        self.codebook_size = int(cfg.codebook_size)
        total = cfg.n_codebooks if self.kind == "dac" else cfg.num_quantizers
        self.n_codebooks = int(n_codebooks or total)
        if not 1 <= self.n_codebooks <= total:
            raise ValueError(f"n_codebooks must be in [1, {total}], got {n_codebooks}")
        self._modules: dict[str, nn.Module] = {}
        self._strides: dict[str, int] = {}  # hook -> samples per frame
        getattr(self, f"_build_{self.kind}")(cfg)
        self._codes = _Codes(getattr(self, f"_codes_{self.kind}"))
        self._add("quantizer.hook_codes", self._codes, self._strides["hook_latent"])

    # --- per-family wiring ----------------------------------------------------------------------
    def _add(self, name: str, module: nn.Module, stride: int) -> None:
        self._modules[name] = module
        self._strides[name] = int(stride)

    def _add_strided_convs(self, layers, conv_type, prefix: str = "encoder.blocks") -> int:
        """Name each strided conv of a SEANet layer list ``{prefix}.{i}.hook_out``; return the total stride."""
        stride, i = 1, 0
        for layer in layers:
            if isinstance(layer, conv_type) and layer.conv.stride[0] > 1:
                stride *= layer.conv.stride[0]
                self._add(f"{prefix}.{i}.hook_out", _time_first_hook(layer), stride)
                i += 1
        return stride

    def _build_encodec(self, cfg) -> None:
        from transformers.models.encodec.modeling_encodec import EncodecConv1d

        hop = self._add_strided_convs(self.hf_model.encoder.layers, EncodecConv1d)
        self._add("hook_latent", _time_first_hook(self.hf_model.encoder), hop)
        self.hop_length = hop

    def _build_dac(self, cfg) -> None:
        stride = 1
        for i, (block, ratio) in enumerate(zip(self.hf_model.encoder.block, cfg.downsampling_ratios)):
            stride *= ratio
            self._add(f"encoder.blocks.{i}.hook_out", _time_first_hook(block), stride)
        self._add("hook_latent", _time_first_hook(self.hf_model.encoder), stride)
        self.hop_length = stride

    def _build_mimi(self, cfg) -> None:
        from transformers.models.mimi.modeling_mimi import MimiConv1d

        encoder = self.hf_model.encoder
        if encoder is None or encoder.downsample is None:
            raise ValueError(f"{self.name}: Mimi without an encoder or a latent downsampling layer is not supported")
        hop = self._add_strided_convs(encoder.encoder_seanet.layers, MimiConv1d)
        self._add("encoder.hook_out", _time_first_hook(encoder.encoder_seanet.layers[-1]), hop)
        for i, layer in enumerate(encoder.encoder_transformer.layers):
            prefix = f"encoder_transformer.blocks.{i}"
            self._add(f"{prefix}.hook_attn_out", layer.self_attn_layer_scale, hop)
            self._add(f"{prefix}.hook_mlp_out", layer.mlp_layer_scale, hop)
            self._add(f"{prefix}.hook_resid_post", layer, hop)
        latent_stride = hop * encoder.downsample.conv.stride[0]
        self._add("hook_latent", _time_first_hook(encoder.downsample), latent_stride)
        self.hop_length = latent_stride

    def _codes_encodec(self, latent: torch.Tensor) -> torch.Tensor:
        q = self.hf_model.quantizer
        bits_per_frame = math.log2(q.codebook_size) * q.frame_rate
        bandwidth = (self.n_codebooks + 0.5) * bits_per_frame / 1000  # floor() inside gives n_codebooks
        return q.encode(latent, bandwidth).permute(1, 2, 0)  # [K, B, T] -> [B, T, K]

    def _codes_dac(self, latent: torch.Tensor) -> torch.Tensor:
        return self.hf_model.quantizer(latent, self.n_codebooks)[1].transpose(1, 2)  # [B, K, T] -> [B, T, K]

    def _codes_mimi(self, latent: torch.Tensor) -> torch.Tensor:
        return self.hf_model.quantizer.encode(latent, self.n_codebooks).permute(1, 2, 0)

    # --- AudioModel -----------------------------------------------------------------------------
    def hook_modules(self) -> dict[str, nn.Module]:
        return dict(self._modules)

    def frame_rate(self, hook: str) -> float:
        self.resolve_exact([hook])
        return self.sample_rate / self._strides[hook]

    def n_frames(self, hook: str, n_samples: int) -> int:
        """``ceil(n / stride)`` with the integer stride of ``hook`` (no float rounding)."""
        return -(-int(n_samples) // self._strides[hook])

    def _forward(self, audio: list[np.ndarray]) -> None:
        x = torch.from_numpy(np.stack(audio)).to(self.device, self.dtype)[:, None, :]  # [B, 1, L]
        # at least one hop (convs fail on empty input); DAC: a multiple of the hop (see module docs)
        target = max(x.shape[-1], self.hop_length)
        if self.kind == "dac":
            target = -(-target // self.hop_length) * self.hop_length
        x = nn.functional.pad(x, (0, target - x.shape[-1]))
        cfg = self.hf_model.config
        if self.kind == "encodec":
            x = x.expand(-1, cfg.audio_channels, -1)
            if cfg.normalize:  # as EncodecModel._encode_frame: unit RMS, over the whole clip
                x = x / (x.mean(1, keepdim=True).pow(2).mean(-1, keepdim=True).sqrt() + 1e-8)
            latent = self.hf_model.encoder(x)
        elif self.kind == "dac":
            latent = self.hf_model.encoder(x)
        else:
            latent = self.hf_model.encoder(x).latents
        if self._codes._forward_hooks:  # quantising is only worth it when someone listens
            self._codes(latent)

    def _run_batch(self, clips: list[np.ndarray], names: list[str]) -> list[dict[str, torch.Tensor]]:
        """Only equal-length clips share a pass (padding would change the last frames)."""
        results: list[dict[str, torch.Tensor]] = [{}] * len(clips)
        for idx in split_by_length(clips):
            for i, res in zip(idx, super()._run_batch([clips[i] for i in idx], names)):
                results[i] = res
        return results

    def info(self) -> dict:
        return {**super().info(), "codebook_size": self.codebook_size, "n_codebooks": self.n_codebooks}


def _model_class(model_type: str):
    import transformers

    classes = {"encodec": "EncodecModel", "dac": "DacModel", "mimi": "MimiModel"}
    if model_type not in classes:
        raise ValueError(f"model_type {model_type!r} is not a supported codec {SUPPORTED_MODEL_TYPES}")
    return getattr(transformers, classes[model_type])


def load(spec: str, device: str = "cpu", dtype: torch.dtype | str | None = None) -> CodecAudioModel:
    """Load an EnCodec / DAC / Mimi checkpoint (hub id or local dir) into a :class:`CodecAudioModel`.

    Offline, a hub id raises :class:`~workbench.models.hubert.HubModelUnavailableError`
    explaining how to pass a local dir.
    """
    from transformers import AutoConfig

    config = from_pretrained_or_explain(AutoConfig, spec)
    cls = _model_class(config.model_type)
    dtype = _as_dtype(dtype)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = from_pretrained_or_explain(cls, spec, **kwargs).to(device)
    return CodecAudioModel(model, spec=spec)


def from_config(config, device: str = "cpu", dtype: torch.dtype | str | None = None, n_codebooks=None) -> CodecAudioModel:
    """A random-init codec from an ``EncodecConfig`` / ``DacConfig`` / ``MimiConfig`` (tests).

    EnCodec and Mimi initialise their codebooks to zeros (they are k-means buffers filled in
    training), which would make every code 0; random codebooks are drawn instead so that the
    codes carry information.
    """
    model = _model_class(config.model_type)(config)
    with torch.no_grad():
        if config.model_type == "encodec":
            for layer in model.quantizer.layers:
                layer.codebook.embed.normal_()
        elif config.model_type == "mimi":
            q = model.quantizer
            for rvq in (q.semantic_residual_vector_quantizer, q.acoustic_residual_vector_quantizer):
                for layer in rvq.layers:
                    layer.codebook.embed_sum.normal_()
                    layer.codebook.cluster_usage.fill_(1.0)
                    layer.codebook._embed = None  # cached embed_sum / usage
    model = model.to(device)
    if dtype is not None:
        model = model.to(_as_dtype(dtype))
    return CodecAudioModel(model, spec=f"random-{config.model_type}", n_codebooks=n_codebooks)


#: tiny layouts for tests and demos: the real strides (so real frame rates), narrow channels
TINY_CONFIGS = {
    # facebook/encodec_24khz strides 2, 4, 5, 8 -> 75 Hz; 6 codebooks of 64
    "encodec": dict(num_filters=4, hidden_size=16, codebook_size=64, codebook_dim=16, num_lstm_layers=1,
                    target_bandwidths=[1.5, 3.0]),
    # descript/dac_16khz strides 2, 4, 5, 8 -> 50 Hz; 3 codebooks of 64
    "dac": dict(encoder_hidden_size=4, decoder_hidden_size=16, hidden_size=16, n_codebooks=3, codebook_size=64,
                codebook_dim=4, downsampling_ratios=[2, 4, 5, 8], upsampling_ratios=[8, 5, 4, 2], sampling_rate=16000),
    # kyutai/mimi strides 4, 5, 6, 8 -> 25 Hz transformer, x2 -> 12.5 Hz latent; 4 codebooks of 64
    "mimi": dict(hidden_size=16, num_filters=4, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2, codebook_size=64, codebook_dim=8, num_quantizers=4,
                 vector_quantization_hidden_dimension=8, upsample_groups=16),
}


def tiny_config(model_type: str, **overrides):
    """The transformers config of :data:`TINY_CONFIGS` ``[model_type]`` with ``overrides`` applied."""
    import transformers

    if model_type not in TINY_CONFIGS:
        raise ValueError(f"model_type must be one of {sorted(TINY_CONFIGS)}, got {model_type!r}")
    config_cls = {"encodec": transformers.EncodecConfig, "dac": transformers.DacConfig, "mimi": transformers.MimiConfig}
    return config_cls[model_type](**{**TINY_CONFIGS[model_type], **overrides})


def random_codec(model_type: str, seed: int = 0, n_codebooks: int | None = None, **overrides) -> CodecAudioModel:
    """A tiny random-init EnCodec / DAC / Mimi with the real strides (frame rates): no weights needed."""
    config = tiny_config(model_type, **overrides)
    with torch.random.fork_rng():  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        return from_config(config, n_codebooks=n_codebooks)


def _match_codebook_scale(codec: CodecAudioModel) -> None:
    """Place a random EnCodec's N(0, 1) codewords where its encoder's latents are (the per-dimension
    mean and spread of the latent of 1 s of white noise at a speech-like level): a narrow random
    encoder's latents sit in a small cloud off the origin, so every frame would otherwise pick the
    same codeword (one code in use). Residual levels get the spread only."""
    hf = codec.hf_model
    with torch.no_grad():
        noise = 0.05 * torch.randn(1, hf.config.audio_channels, codec.sample_rate)
        latent = hf.encoder(noise)[0]  # [D, T]
        mean, std = latent.mean(1), latent.std(1)
        for i, layer in enumerate(hf.quantizer.layers):
            layer.codebook.embed.mul_(std).add_(mean if i == 0 else 0)


def save_random_codec(model_type: str, out, seed: int = 0, **overrides) -> Path:
    """Write a random-init codec (:func:`random_codec`: the real strides, narrow channels; ``overrides``
    change its config, e.g. ``codebook_size=1024``) as a local checkpoint that ``load(out)`` and
    ``workbench cache --model OUT`` read like a hub model: the offline stand-in for EnCodec / DAC /
    Mimi rows of a token comparison (its tokens measure the pipeline, not the codec).

    >>> save_random_codec("dac", "work/models/random-dac", codebook_size=1024)   # doctest: +SKIP
    """
    import shutil
    import tempfile

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty: choose a new directory")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = from_config(tiny_config(model_type, **overrides))
        if model_type == "encodec":
            _match_codebook_scale(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:  # written beside, then renamed: a killed run leaves no half checkpoint
        model.hf_model.save_pretrained(tmp)
        if out.is_dir():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
