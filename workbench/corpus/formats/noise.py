"""Noise and background collections: MUSAN and WHAM!.

- **MUSAN**: ``music|noise|speech/<collection>/*.wav``; ``domain`` = the top folder, ``collection``
  (e.g. ``free-sound``, ``librivox``) kept. Speech clips have no transcript.
- **WHAM!** noise: ``tr|cv|tt/*.wav`` (optionally under ``wham_noise/``); ``domain`` = ``noise``,
  ``split`` = the folder (``tr`` train, ``cv`` dev, ``tt`` test).

Neither layout can be told from a plain folder tree, so name them: ``--format musan``.

Usage (on a real corpus in that layout)::

    from workbench.corpus.formats import iter_clips
    clips = list(iter_clips("musan", "musan"))
    sorted({c.domain for c in clips})
    # -> ['music', 'noise', 'speech']
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from workbench.audio import AUDIO_EXTENSIONS
from workbench.corpus.formats import ReadContext, safe_id
from workbench.corpus.types import Clip

__all__ = ["read_musan", "read_wham"]


def _audio_under(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(AUDIO_EXTENSIONS) and not f.startswith("."):
                yield Path(dirpath) / f


def read_musan(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream MUSAN clips: music, then noise, then speech."""
    parts = [d for d in ("music", "noise", "speech") if (root / d).is_dir()]
    if not parts:
        raise FileNotFoundError(f"{root}: no music/, noise/ or speech/ folder (MUSAN layout)")
    for domain in parts:
        for audio in _audio_under(root / domain):
            rel = audio.relative_to(root / domain).parts
            yield Clip(safe_id(f"musan_{audio.stem}"), str(audio.resolve()), domain,
                       extra={"collection": rel[0] if len(rel) > 1 else None})


def read_wham(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream WHAM! noise clips: tr, cv, tt."""
    base = root / "wham_noise" if (root / "wham_noise").is_dir() else root
    parts = [d for d in ("tr", "cv", "tt") if (base / d).is_dir()]
    if not parts:
        raise FileNotFoundError(f"{root}: no tr/, cv/ or tt/ folder (WHAM! noise layout)")
    want = ctx.options.get("split")
    for split in parts:
        if want and split not in ([want] if isinstance(want, str) else want):
            continue
        for audio in _audio_under(base / split):
            yield Clip(safe_id(f"wham_{split}_{audio.stem}"), str(audio.resolve()), "noise", extra={"split": split})
