"""Massive frames: one rule for training, evaluation and the splice.

Whisper's residual stream has a few frames with 10-25x the median norm (on tiny.en block 3:
0.2-0.8% of frames holding 60-86% of the variance). By default an SAE trains without them
(:class:`sae.data.CacheSource`, ``max_norm_ratio=10``): the frame filter is recorded per hook in
``train_config.json`` (``source.frame_filter[hook]``: the ratio, the median norm of the training
frames and the absolute ``norm_limit``). The SAE is then *not* a model of those frames, and every
later step treats them alike:

- ``sae eval`` scores its headline metrics on the frames the SAE is for (norm <= the recorded
  limit) and reports both variants: ``metrics_without_massive`` and ``metrics_all_frames``, with
  ``massive_frames`` (limit, count, fraction, share of the variance);
- the splice passes massive frames through unreconstructed (``massive_passed_through`` in the
  result says how many).

An SAE trained on all frames (``sae train --max-norm-ratio 0``) records ``frame_filter: null``;
eval then scores every frame and splices every frame, and still reports the without-massive
figures for the conventional 10x rule (:data:`workbench.conventions.MASSIVE_RATIO`).

Example
-------
>>> import json, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "train_config.json").write_text(json.dumps({"source": {"frame_filter": {"h": {
...     "max_norm_ratio": 10.0, "median_norm": 3.0, "norm_limit": 30.0}}}}))
>>> recorded_filter(d / "h", "h")["norm_limit"]
30.0
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from workbench.conventions import MASSIVE_RATIO, norm_limit

#: what ``recorded_filter`` returns for an SAE trained on every frame
ALL_FRAMES = None
_MISSING = object()


def describe(ratio: float | None, median: float, norms_sample: np.ndarray | None = None) -> dict | None:
    """The ``train_config.json`` record of a filter at ``ratio`` x ``median`` (None: no filter)."""
    if ratio is None:
        return None
    limit = norm_limit(median, ratio)
    rec = {"rule": "frames with L2 norm > max_norm_ratio x median norm of the training frames are not "
                   "trained on; sae eval scores and the splice passes them through unreconstructed",
           "max_norm_ratio": float(ratio), "median_norm": float(median), "norm_limit": limit}
    if norms_sample is not None and len(norms_sample):
        big = norms_sample > limit
        rec["dropped_fraction_estimate"] = float(big.mean())
        sq = norms_sample.astype(np.float64) ** 2
        rec["dropped_energy_share_estimate"] = float(sq[big].sum() / sq.sum()) if sq.sum() > 0 else 0.0
    return rec


def _train_config(sae_dir: str | os.PathLike) -> dict | None:
    sae_dir = Path(sae_dir)
    for folder in (sae_dir, sae_dir.parent):
        path = folder / "train_config.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"cannot read {path}: {e}") from e
    return None


def recorded_filter(sae_dir: str | os.PathLike, hook: str, default=_MISSING):
    """The frame filter the SAE in ``sae_dir`` was trained with, from its ``train_config.json``.

    Returns the record (a dict with ``norm_limit``), or None when it trained on every frame. An
    SAE trained from a cache before filters were recorded used the then-silent default (10x the
    median norm): it gets ``{"max_norm_ratio": 10, "norm_limit": None, "legacy": True}`` (the
    caller estimates the limit from the frames at hand). An SAE without ``train_config.json``
    (imported) returns ``default`` (by default None: treated as trained on every frame).
    """
    conf = _train_config(sae_dir)
    source = (conf or {}).get("source") or {}
    if "frame_filter" not in source:
        if source.get("source") == "cache" or "max_norm_ratio" in source:  # old cache runs; streamed runs
            ratio = source.get("max_norm_ratio", MASSIVE_RATIO)
            if ratio is None:
                return None
            return {"max_norm_ratio": float(ratio), "median_norm": None, "norm_limit": None, "legacy": True,
                    "rule": "limit not recorded (a run from before the filter was written to train_config.json, "
                            "or a streamed run): max_norm_ratio x the median norm"}
        return None if default is _MISSING else default
    filters = source["frame_filter"]
    if filters is None:
        return None
    return filters.get(hook)


def split_massive(X: torch.Tensor, limit: float | None, ratio: float = MASSIVE_RATIO) -> tuple[np.ndarray, float]:
    """``(mask of frames with norm > limit, limit)``; with ``limit`` None, ``ratio`` x the median
    norm of ``X`` is used (for reporting, or for an SAE whose limit was not recorded)."""
    norms = torch.linalg.vector_norm(X.float(), dim=1).numpy()
    if limit is None:
        limit = norm_limit(float(np.median(norms)) if len(norms) else 0.0, ratio)
    return norms > limit, float(limit)


def summary(X: torch.Tensor, massive: np.ndarray, limit: float, source: str) -> dict:
    """Count, fraction and share of the variance (about the mean) of the massive frames."""
    x = X.double()
    centred = (x - x.mean(0)).pow(2).sum(1).numpy()
    total = float(centred.sum())
    return {"norm_limit": limit, "limit_from": source, "frames": int(massive.sum()),
            "fraction": float(massive.mean()) if len(massive) else 0.0,
            "variance_share": float(centred[massive].sum() / total) if total > 0 else 0.0}
