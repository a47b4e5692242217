"""ESPnet speech-to-text models (OWSM, POWSM: E-Branchformer encoder, CTC) as an :class:`AudioModel`.

Wraps an ``espnet2`` ASR / S2T model object (``ESPnetASRModel``, ``ESPnetS2TModel``: anything
with ``encode(speech, lengths)``, an ``encoder`` holding ``embed`` and a list of ``encoders``, and
a ``ctc``). Hook points (TransformerLens-style; frame rate = 16 kHz / hop / subsampling, 25 Hz
for OWSM's hop 160 and conv2d x4):

- ``encoder.hook_embed``: output of the subsampling front (``encoder.embed``);
- ``encoder.blocks.{i}.hook_resid_post``: output of encoder layer ``i``;
- ``encoder.hook_out``: after the encoder's final norm (when it has one);
- ``ctc.hook_log_probs``: CTC log-posteriors ``[T, vocab]``; for POWSM the vocabulary is phones,
  so this is the phone posterior track the probes' phone targets call for.

Each layer's hidden states are routed (a forward hook) through an identity module: forward hooks
there read them and ``model.hooks({...})`` edits them inside every pass (transcription and phone
recognition included). Clips run one at a time (padding never changes a clip's frames).

:meth:`ESPnetAudioModel.recognize` is greedy CTC decoding (collapse repeats, drop the blank):
phone recognition for POWSM, a transcript for CTC vocabularies of words/pieces;
:meth:`ESPnetAudioModel.transcribe` uses ESPnet's own beam search (``Speech2Text``) when the model
was loaded from the hub, else the greedy CTC text.

Specs: hub ids ``espnet/powsm``, ``espnet/owsm_v3.1_ebf`` (``Speech2Text.from_pretrained``, needs
the network), a local directory with ``config.yaml`` + ``model.pth`` (or ``*.pth``), and
``espnet-random`` (:func:`random_espnet`, a small random-init E-Branchformer CTC model; nothing to
download). ESPnet is an optional extra: ``pip install --no-deps espnet==202511`` then
``pip install ".[espnet]"`` (its other dependencies; ``pip install espnet`` itself fails where a
dependency's URL requirement is refused).

Example
-------
>>> from workbench.models import load
>>> model = load("espnet-random")                                 # doctest: +SKIP
>>> acts = model.run_with_cache(audio, ["encoder.blocks.*.hook_resid_post", "ctc.hook_log_probs"])  # doctest: +SKIP
>>> model.recognize(audio)                                        # doctest: +SKIP
'AH B K ...'
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.models.base import AudioModel

__all__ = ["PHONES", "ESPnetAudioModel", "MissingESPnetError", "load", "random_espnet", "require_espnet"]

EXTRA_HINT = ("ESPnet is not installed: `pip install --no-deps espnet==202511 && pip install "
              "\"audio-interp-workbench[espnet]\"` (the `espnet` extra)")
PHONES = ["<blank>", "<unk>", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
          "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
          "V", "W", "Y", "Z", "ZH", "sil", "<sos/eos>"]


class MissingESPnetError(ImportError):
    """``espnet2`` is not importable; the message names the extra that provides it."""


def require_espnet():
    try:
        import espnet2  # noqa: F401
    except ImportError as err:
        raise MissingESPnetError(EXTRA_HINT) from err


class _Tap(nn.Module):
    """Identity: its forward output *is* the hook's activation (hooks attach here)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _route(tap: _Tap):
    """Forward hook: route the hidden states of an ESPnet layer's output through ``tap``.

    ESPnet layers return ``(x, mask, ...)`` where ``x`` may be ``(hidden, pos_emb)`` (relative
    positions); the structure is kept, only ``hidden`` goes through the tap. A hook (not a wrapper
    module) keeps the layer's class, which ESPnet encoders check with ``isinstance``."""

    def hook(_module, _inputs, out):
        if isinstance(out, torch.Tensor):
            return tap(out)
        x = out[0]
        x = (tap(x[0]), *x[1:]) if isinstance(x, tuple) else tap(x)
        return (x, *out[1:])

    return hook


def _subsampled(n_feats: int, embed: nn.Module) -> int:
    """Frames after ESPnet's ``Conv2dSubsampling*`` classes (each conv: kernel 3, stride 2, no padding)."""
    name = type(embed).__name__ if not isinstance(embed, nn.Sequential) else type(embed[0]).__name__
    t = n_feats
    if name == "Conv2dSubsampling":
        return ((t - 1) // 2 - 1) // 2
    if name == "Conv2dSubsampling1":
        return t - 4
    if name == "Conv2dSubsampling2":
        return (t - 1) // 2 - 2
    if name == "Conv2dSubsampling6":
        return ((t - 1) // 2 - 2) // 3
    if name == "Conv2dSubsampling8":
        return (((t - 1) // 2 - 1) // 2 - 1) // 2
    return t  # linear / no subsampling


_FACTOR = {"Conv2dSubsampling": 4, "Conv2dSubsampling1": 1, "Conv2dSubsampling2": 2, "Conv2dSubsampling6": 6,
           "Conv2dSubsampling8": 8}


class ESPnetAudioModel(AudioModel):
    """Adapter over an ESPnet ASR / S2T model (see the module docstring)."""

    def __init__(self, espnet_model: nn.Module, spec: str = "espnet", speech2text=None, device: str = "cpu") -> None:
        super().__init__()
        self.net = espnet_model.to(device).eval()
        self.spec, self.name = spec, f"espnet:{spec}"
        self.speech2text = speech2text
        self.token_list = list(getattr(espnet_model, "token_list", []) or [])
        self.sample_rate = 16000
        enc = espnet_model.encoder
        self._taps: dict[str, nn.Module] = {}
        self._add("encoder.hook_embed", enc.embed)
        for i, layer in enumerate(enc.encoders):
            self._add(f"encoder.blocks.{i}.hook_resid_post", layer)
        if getattr(enc, "after_norm", None) is not None and getattr(enc, "normalize_before", True):
            self._taps["encoder.hook_out"] = enc.after_norm
        self._ctc_tap = _Tap()
        self._taps["ctc.hook_log_probs"] = self._ctc_tap
        self._ctc_out: torch.Tensor | None = None
        embed = enc.embed
        self._embed_name = type(embed[0] if isinstance(embed, nn.Sequential) else embed).__name__
        self.hop = int(getattr(espnet_model.frontend, "hop_length", 160))

    def _add(self, name: str, module: nn.Module) -> None:
        tap = _Tap()
        module.register_forward_hook(_route(tap))
        self._taps[name] = tap

    # --- AudioModel -----------------------------------------------------------------------------
    def hook_modules(self) -> dict[str, nn.Module]:
        return dict(self._taps)

    def frame_rate(self, hook: str) -> float:
        self.resolve_exact([hook])
        return self.sample_rate / self.hop / _FACTOR.get(self._embed_name, 1)

    def n_frames(self, hook: str, n_samples: int) -> int:
        embed = self.net.encoder.embed
        return max(0, _subsampled(int(n_samples) // self.hop + 1, embed))

    def _forward(self, audio: list[np.ndarray]) -> None:
        outs = []
        for clip in audio:  # one at a time: padding never changes a clip's frames
            x = torch.from_numpy(np.asarray(clip, np.float32))[None].to(self.device)
            enc, _ = self.net.encode(x, torch.tensor([x.shape[1]], device=self.device))
            outs.append(self._ctc_tap(self.net.ctc.log_softmax(enc)))
        self._ctc_out = outs[-1]

    def _run_batch(self, clips, names):
        return [super(ESPnetAudioModel, self)._run_batch([c], names)[0] for c in clips]

    # --- decoding -------------------------------------------------------------------------------
    @torch.no_grad()
    def ctc_log_probs(self, audio: np.ndarray) -> torch.Tensor:
        """``[T, vocab]`` CTC log-posteriors of one clip (interventions apply)."""
        return self.run_with_cache(np.asarray(audio, np.float32), ["ctc.hook_log_probs"])["ctc.hook_log_probs"]

    def recognize(self, audio: np.ndarray) -> str:
        """Greedy CTC decoding: phones (POWSM) or pieces joined ("▁" starts a word)."""
        ids = self.ctc_log_probs(audio).argmax(-1).tolist()
        out, prev = [], None
        for i in ids:
            if i != prev and i != 0:
                out.append(self.token_list[i] if i < len(self.token_list) else str(i))
            prev = i
        if any(t.startswith("▁") for t in out):
            return "".join(out).replace("▁", " ").strip()
        return " ".join(out)

    def transcribe(self, audio: np.ndarray) -> str:
        """ESPnet's beam search when loaded from the hub (hooks act inside it), else :meth:`recognize`."""
        if self.speech2text is None:
            return self.recognize(audio)
        with torch.no_grad():
            result = self.speech2text(np.asarray(audio, np.float32))
        return result[0][0] if result and isinstance(result[0], (list, tuple)) else str(result[0])


class _LogMel(nn.Module):
    """A small log-mel frontend (hop 160, centre-padded STFT) with ESPnet's ``(feats, lens)`` interface;
    used by :func:`random_espnet` so the offline model needs no librosa / torchaudio."""

    def __init__(self, n_fft: int = 400, hop_length: int = 160, n_mels: int = 40, sr: int = 16000) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.n_mels = n_fft, hop_length, n_mels
        top = 2595 * np.log10(1 + (sr / 2) / 700)  # HTK mel scale
        pts = 700 * (10 ** (np.linspace(0.0, top, n_mels + 2) / 2595) - 1)
        freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
        fb = np.maximum(0, np.minimum((freqs[None] - pts[:-2, None]) / (pts[1:-1, None] - pts[:-2, None]),
                                      (pts[2:, None] - freqs[None]) / (pts[2:, None] - pts[1:-1, None])))
        self.register_buffer("fb", torch.tensor(fb, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def output_size(self) -> int:
        return self.n_mels

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor):
        spec = torch.stft(speech, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True)
        feats = torch.log(self.fb @ spec.abs().pow(2) + 1e-6).transpose(1, 2)  # [B, T, n_mels]
        return feats, lengths // self.hop_length + 1


def random_espnet(seed: int = 0, n_layers: int = 2, d_model: int = 32, token_list: list[str] | None = None,
                  device: str = "cpu") -> ESPnetAudioModel:
    """A small random-init POWSM-style model: log-mel -> conv2d x4 -> E-Branchformer -> CTC over phones."""
    require_espnet()
    from espnet2.asr.ctc import CTC
    from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.asr.frontend.abs_frontend import AbsFrontend

    class LogMel(_LogMel, AbsFrontend):  # ESPnet type-checks its frontend
        pass

    tokens = token_list or PHONES
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        frontend = LogMel()
        encoder = EBranchformerEncoder(input_size=frontend.output_size(), output_size=d_model, attention_heads=2,
                                       cgmlp_linear_units=2 * d_model, cgmlp_conv_kernel=7, linear_units=2 * d_model,
                                       num_blocks=n_layers, use_ffn=True, macaron_ffn=True, use_flash_attn=False,
                                       dropout_rate=0.0, positional_dropout_rate=0.0)
        ctc = CTC(odim=len(tokens), encoder_output_size=d_model)
        net = ESPnetASRModel(vocab_size=len(tokens), token_list=tokens, frontend=frontend, specaug=None,
                             normalize=None, preencoder=None, encoder=encoder, postencoder=None, decoder=None,
                             ctc=ctc, joint_network=None, ctc_weight=1.0, report_cer=False, report_wer=False)
    return ESPnetAudioModel(net, spec="espnet-random", device=device)


def load(spec: str, device: str = "cpu", dtype=None) -> ESPnetAudioModel:
    """``espnet-random``, a local directory (``config.yaml`` + ``*.pth``) or a hub id (``espnet/powsm``)."""
    require_espnet()
    if spec in ("espnet-random", "espnet_random"):
        return random_espnet(device=device)
    local = Path(spec)
    if local.is_dir():
        from espnet2.tasks.s2t import S2TTask

        pths = sorted(local.glob("*.pth"))
        if not (local / "config.yaml").is_file() or not pths:
            raise FileNotFoundError(f"{local}: an ESPnet model directory needs config.yaml and a *.pth file")
        net, _ = S2TTask.build_model_from_file(local / "config.yaml", pths[0], device)
        return ESPnetAudioModel(net, spec=spec, device=device)
    s2t = None
    with contextlib.suppress(ImportError):
        from espnet2.bin.s2t_inference import Speech2Text as s2t
    if s2t is None:
        raise MissingESPnetError(f"loading {spec!r} from the hub needs espnet2.bin.s2t_inference "
                                 "(hydra-core, espnet_model_zoo); " + EXTRA_HINT)
    speech2text = s2t.from_pretrained(spec, device=device)
    return ESPnetAudioModel(speech2text.s2t_model, spec=spec, speech2text=speech2text, device=device)
