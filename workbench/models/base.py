"""The :class:`AudioModel` interface every model family implements.

Hook points are named TransformerLens-style (``encoder.blocks.3.hook_resid_post``).
An adapter maps each name to a torch module whose forward output *is* that
activation; this base class then provides caching and interventions with plain
forward hooks, so caching, SAEs, probes, EEG and steering never special-case a model.

Example
-------
>>> model = workbench.models.load("whisper-tiny.en")            # doctest: +SKIP
>>> acts = model.run_with_cache(audio, ["encoder.blocks.3.hook_resid_post"])  # doctest: +SKIP
>>> acts["encoder.blocks.3.hook_resid_post"].shape                # [T, D]   # doctest: +SKIP
>>> with model.hooks({"encoder.blocks.3.hook_resid_post": lambda a: a * 0}):  # doctest: +SKIP
...     text = model.transcribe(audio)
"""
from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from workbench.conventions import FrameGrid, UnknownHookError, resolve_hooks

HookFn = Callable[[torch.Tensor], torch.Tensor]
AudioLike = np.ndarray | torch.Tensor


def _replace_first(output, new):
    """Forward outputs may be a tensor, a tuple or a ModelOutput; the activation is the first item."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    if hasattr(output, "keys"):  # transformers ModelOutput
        key = next(iter(output.keys()))
        output[key] = new
        return output
    raise TypeError(f"cannot replace activation in output of type {type(output).__name__}")


def _first(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple):
        return output[0]
    if hasattr(output, "keys"):
        return output[next(iter(output.keys()))]
    raise TypeError(f"cannot read activation from output of type {type(output).__name__}")


class AudioModel(ABC):
    """Adapter interface (one subclass per model family).

    Subclasses set ``name``, ``spec``, ``sample_rate`` and implement
    :meth:`hook_modules`, :meth:`frame_rate` and :meth:`_forward`. Hook points that
    are not module outputs (e.g. integer codec codes) can be added by overriding
    :meth:`run_with_cache`.
    """

    name: str = "model"
    spec: str = ""
    sample_rate: int = 16000
    #: seconds of audio per forward window (Whisper: 30); None means whole clips.
    max_window_s: float | None = None

    def __init__(self) -> None:
        self._interventions: dict[str, HookFn] = {}

    # --- to implement -----------------------------------------------------------------------
    @abstractmethod
    def hook_modules(self) -> dict[str, nn.Module]:
        """Map hook name -> module whose forward output is the activation."""

    @abstractmethod
    def frame_rate(self, hook: str) -> float:
        """Frames per second of ``hook``."""

    @abstractmethod
    def _forward(self, audio: list[np.ndarray]) -> None:
        """Run the model on a batch of float32 mono clips at ``sample_rate`` (hooks capture)."""

    def n_frames(self, hook: str, n_samples: int) -> int:
        """Real (unpadded) frames that ``n_samples`` of audio give at ``hook``."""
        return int(math.ceil(n_samples * self.frame_rate(hook) / self.sample_rate))

    def window_frames(self, hook: str, n_samples: int) -> list[int]:
        """Real frames of ``hook`` in each forward row over one clip of ``n_samples``, in run order:
        one row per ``max_window_s`` window (the whole clip when None). A splice replaces these."""
        if not self.max_window_s:
            return [self.n_frames(hook, n_samples)]
        w = int(self.max_window_s * self.sample_rate)
        return [self.n_frames(hook, min(w, n_samples - a)) for a in range(0, max(n_samples, 1), w)]

    # --- shared behaviour -------------------------------------------------------------------
    @property
    def hook_points(self) -> list[str]:
        return list(self.hook_modules())

    @property
    def integer_hooks(self) -> frozenset[str]:
        """Hook points whose activations are integer tensors (token ids, codes); caches store them exactly."""
        return frozenset()

    def resolve_hooks(self, patterns: str | Sequence[str]) -> list[str]:
        """Expand glob patterns (``encoder.blocks.*.hook_resid_post``) in model order.

        Raises :class:`UnknownHookError` listing valid names if a pattern matches nothing.
        """
        return resolve_hooks(patterns, self.hook_points, what=f"model {self.name}", allow_all=False)

    #: how :meth:`frame_grid` was obtained; adapters that derive it from their front end say so
    frame_centre_rule: str = "assumed: frame i covers [i / rate, (i + 1) / rate) (not derived for this adapter)"

    def frame_grid(self, hook: str) -> FrameGrid:
        """Where ``hook``'s frame ``i`` is centred (:class:`workbench.conventions.FrameGrid`).

        Adapters derive it from their front end (STFT centring, conv kernels, strides, padding;
        tested by perturbing the audio); this default assumes frame ``i`` covers
        ``[i / rate, (i + 1) / rate)``.
        """
        rate = self.frame_rate(hook)
        return FrameGrid(0.5 / rate, 1.0 / rate)

    def frame_times(self, hook: str, n: int) -> np.ndarray:
        """``[n, 2]`` start/end seconds of the first ``n`` frames of ``hook``: ``centre -/+ hop / 2``,
        so the midpoint is the frame's true centre (Whisper's frame 0 starts at -10 ms)."""
        return self.frame_grid(hook).times(n)

    def frame_centres(self, hook: str, n: int) -> np.ndarray:
        """Centre (seconds) of each of the first ``n`` frames of ``hook``: what every label,
        lag and alignment uses (:meth:`frame_grid`)."""
        return self.frame_grid(hook).centres(n)

    def _weights(self) -> Iterator[nn.Parameter]:
        """The model's parameters: those of ``self.hf_model`` when the adapter wraps one
        transformers model, else those of the hooked modules."""
        hf = getattr(self, "hf_model", None)
        modules = [hf] if isinstance(hf, nn.Module) else list(self.hook_modules().values())
        for m in modules:
            yield from m.parameters()

    @property
    def device(self) -> torch.device:
        p = next(self._weights(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the weights (float32 for a model without any)."""
        p = next(self._weights(), None)
        return p.dtype if p is not None else torch.float32

    @contextlib.contextmanager
    def hooks(self, fns: Mapping[str, HookFn]) -> Iterator[None]:
        """Intervene: inside the block, each ``fn(activation) -> activation`` replaces the stream.

        Activations arrive batched as the module produced them (e.g. ``[B, T, D]``).
        Interventions stack with any already active ones (outer first).
        """
        names = self.resolve_exact(fns)
        modules = self.hook_modules()
        handles = []

        def make(fn: HookFn):
            def hook(_module, _inputs, output):
                return _replace_first(output, fn(_first(output)))

            return hook

        try:
            for name in names:
                handles.append(modules[name].register_forward_hook(make(fns[name])))
            yield
        finally:
            for h in handles:
                h.remove()

    def resolve_exact(self, names: Mapping[str, object] | Sequence[str]) -> list[str]:
        valid = set(self.hook_points)
        bad = [n for n in names if n not in valid]
        if bad:
            raise UnknownHookError(
                f"{self.name}: unknown hook point(s) {bad}. Valid hook points:\n  " + "\n  ".join(self.hook_points)
            )
        return list(names)

    @torch.no_grad()
    def run_with_cache(
        self, audio: AudioLike | Sequence[AudioLike], hooks: str | Sequence[str]
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Run the model and return ``{hook: Tensor[T, D]}`` per clip, trimmed to the real audio.

        ``audio`` is one clip (1-D) or a list of clips; a single clip returns a dict,
        a list returns a list of dicts. Clips longer than ``max_window_s`` are run in
        consecutive windows and the frames concatenated.
        """
        single = isinstance(audio, (np.ndarray, torch.Tensor)) and np.ndim(audio) == 1
        clips = [_as_numpy(a) for a in ([audio] if single else audio)]
        names = self.resolve_hooks(hooks) if isinstance(hooks, str) else self.resolve_exact(list(hooks))
        out = [self._run_windows(c, names) for c in clips] if self.max_window_s else self._run_batch(clips, names)
        return out[0] if single else out

    def _run_windows(self, clip: np.ndarray, names: list[str]) -> dict[str, torch.Tensor]:
        win = int(self.max_window_s * self.sample_rate)
        pieces = [clip[i : i + win] for i in range(0, max(len(clip), 1), win)]
        per = self._run_batch(pieces, names)
        return {h: torch.cat([p[h] for p in per], dim=0) for h in names}

    def _run_batch(self, clips: list[np.ndarray], names: list[str]) -> list[dict[str, torch.Tensor]]:
        captured: dict[str, torch.Tensor] = {}
        modules = self.hook_modules()

        def make(name: str):
            def hook(_module, _inputs, output):
                captured[name] = _first(output).detach()

            return hook

        handles = [modules[n].register_forward_hook(make(n)) for n in names]
        try:
            self._forward(clips)
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in names if n not in captured]
        if missing:
            raise RuntimeError(f"{self.name}: hook point(s) {missing} did not fire during the forward pass")
        result = []
        for b, clip in enumerate(clips):
            result.append({n: self._trim(n, captured[n][b], len(clip)) for n in names})
        return result

    def _trim(self, hook: str, act: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Cut padding: keep the real frames of a ``[T, D]`` activation (time first)."""
        return act[: self.n_frames(hook, n_samples)]

    def info(self) -> dict:
        """Summary for ``workbench models info``."""
        return {
            "name": self.name,
            "spec": self.spec,
            "sample_rate": self.sample_rate,
            "hook_points": {h: self.frame_rate(h) for h in self.hook_points},
        }


def _as_numpy(a: AudioLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {a.shape}")
    return a
