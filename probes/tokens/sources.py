"""Token sources: what turns audio into an integer track again (for consistency and stability).

A token source has ``sample_rate``, ``frame_rate``, ``encode(clips) -> [ids [T, K] int64]`` and
optionally ``decode(ids [T, K]) -> audio`` (codecs: for the re-encoding test). Three kinds:

- :class:`ModelSource`: an :class:`~workbench.models.AudioModel` and one of its integer hooks
  (``quantizer.hook_codes`` of EnCodec / DAC / Mimi, ``tokens.hook_ids`` of AuriStream);
- :class:`UnitSource`: k-means units of a float hook (``workbench tokens units``): the model's
  activations at the hook, assigned to the nearest of the saved centroids;
- :func:`source_for_cache` picks the right one for a token cache (the model spec recorded in
  ``cache.json``; for a unit cache, the source model and hook recorded in its ``units`` block).

Example
-------
>>> from probes.tokens.sources import source_for_cache      # doctest: +SKIP
>>> src = source_for_cache(ActivationCache.open("work/caches/units"), None)   # doctest: +SKIP
>>> src.encode([audio])[0].shape                            # doctest: +SKIP
(550, 1)
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["ModelSource", "UnitSource", "codec_decoder", "nearest", "source_for_cache"]


def nearest(x: torch.Tensor | np.ndarray, centroids: torch.Tensor | np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean) for each row of ``x`` ``[N, D]`` -> int64 ``[N]``."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    c = torch.as_tensor(np.asarray(centroids, dtype=np.float32))
    c2 = (c * c).sum(1)
    out = [(c2[None] - 2 * x[i : i + chunk] @ c.T).argmin(1) for i in range(0, len(x), chunk)]
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, np.int64)


def _as_2d_ids(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu().numpy()
    return (a[:, None] if a.ndim == 1 else a).astype(np.int64)


class ModelSource:
    """Tokens of an integer hook of a model (``hook`` must be one of ``model.integer_hooks``)."""

    def __init__(self, model, hook: str) -> None:
        model.resolve_exact([hook])
        self.model, self.hook = model, hook
        self.sample_rate = int(model.sample_rate)
        self.frame_rate = float(model.frame_rate(hook))
        self.decode: Callable | None = codec_decoder(model) if hook == "quantizer.hook_codes" else None

    def encode(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = self.model.run_with_cache([np.asarray(c, np.float32) for c in clips], [self.hook])
        return [_as_2d_ids(o[self.hook]) for o in out]


class UnitSource:
    """Discrete units: the nearest centroid of each frame of a float hook (one codebook)."""

    def __init__(self, model, hook: str, centroids: np.ndarray) -> None:
        model.resolve_exact([hook])
        self.model, self.hook = model, hook
        self.centroids = torch.as_tensor(np.asarray(centroids, dtype=np.float32))
        self.sample_rate = int(model.sample_rate)
        self.frame_rate = float(model.frame_rate(hook))
        self.decode = None

    def encode(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = self.model.run_with_cache([np.asarray(c, np.float32) for c in clips], [self.hook])
        return [nearest(o[self.hook].float(), self.centroids)[:, None] for o in out]


def source_for_cache(cache, hook: str | None, device: str = "cpu"):
    """The token source that made ``hook`` of ``cache`` (loads the model named in ``cache.json``)."""
    from workbench.models import load

    units = cache.meta.get("units")
    if units:
        from probes.tokens.units import load_centroids

        model = load(units["source_spec"], device=device)
        return UnitSource(model, units["source_hook"], load_centroids(cache.root))
    spec = cache.meta["model"]["spec"]
    return ModelSource(load(spec, device=device), hook)


def codec_decoder(model) -> Callable[[np.ndarray], np.ndarray] | None:
    """``decode(codes [T, K]) -> audio`` for an EnCodec / DAC / Mimi adapter (None for other models)."""
    hf, kind = getattr(model, "hf_model", None), getattr(model, "kind", None)
    if hf is None or kind not in ("encodec", "dac", "mimi"):
        return None

    @torch.no_grad()
    def decode(codes: np.ndarray) -> np.ndarray:
        c = torch.as_tensor(np.asarray(codes, dtype=np.int64)).T[None].to(model.device)  # [1, K, T]
        if kind == "encodec":
            audio = hf.decode(c[None], [None]).audio_values
        else:
            audio = hf.decode(audio_codes=c).audio_values
        return audio.reshape(-1).float().cpu().numpy()

    return decode
