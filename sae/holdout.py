"""Which clips an SAE trained on, and which it never saw: the held-out split behind every quality figure.

A split is decided once, at training time, by whole groups (:func:`workbench.conventions.groups_of`:
``by="speaker"`` keeps clips that share a source recording or a speaker together, ``by="clip"``
clips that share a source recording), stratified by domain so every domain keeps held-out clips,
and written next to the SAEs as ``holdout.json``::

    {"format": "workbench-sae-holdout-v1", "by": "speaker", "fraction": 0.2, "seed": 0,
     "cache": "...", "train_clips": [...], "heldout_clips": [...]}

``sae eval`` reads it and scores only frames of clips that are not in ``train_clips``, so it also
works on a different cache (every clip there that the SAE did not train on counts as held out).

Example
-------
>>> import pandas as pd
>>> clips = pd.DataFrame({"clip_id": list("abcdefgh"), "domain": ["speech"] * 6 + ["music"] * 2,
...                       "speaker": ["s1", "s1", "s2", "s2", "s3", "s3", None, None]})
>>> split = split_clips(clips, fraction=0.3, by="speaker", seed=0)
>>> sorted(split["heldout_clips"]) == sorted(set("abcdefgh") - set(split["train_clips"]))
True
>>> {c for c in split["heldout_clips"] if c in "gh"} != set()   # music keeps a held-out clip
True
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from workbench.atomic import write_json
from workbench.conventions import GROUP_BY, frame_groups

HOLDOUT_FILE = "holdout.json"
FORMAT = "workbench-sae-holdout-v1"


def clip_table(cache) -> pd.DataFrame:
    """One row per cached clip: ``clip_id``, ``domain``, ``speaker``, ``source_id`` (from the cache's corpus)."""
    rows = [{"clip_id": c.id, "domain": c.domain or "unknown", "speaker": c.speaker,
             "source_id": c.extra.get("source_id")} for c in cache.corpus]
    table = pd.DataFrame(rows, columns=["clip_id", "domain", "speaker", "source_id"])
    cached = set(cache.clip_ids)
    return table[table["clip_id"].isin(cached)].reset_index(drop=True)


def split_clips(clips: pd.DataFrame, fraction: float = 0.2, by: str = "speaker", seed: int = 0) -> dict:
    """Hold out about ``fraction`` of each domain's clips, whole groups at a time.

    Groups are :func:`workbench.conventions.frame_groups` of the table (``source_id`` and
    ``speaker`` columns where present): ``by="speaker"`` keeps clips that share a source recording
    or a speaker on one side; ``by="clip"`` keeps segments of one recording together. In each
    domain with at least two groups at least one group is held out and at least one kept; groups
    are drawn in a seeded order until the held-out clips reach ``fraction`` of the domain's clips.
    A group held out in one domain is held out whole (its clips in other domains too).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    if by not in GROUP_BY:
        raise ValueError(f"holdout by must be one of {GROUP_BY}, got {by!r}")
    if clips["clip_id"].duplicated().any():
        raise ValueError("split_clips: duplicate clip ids")
    rng = np.random.default_rng(seed)
    all_groups = pd.Series(frame_groups(clips, by), index=clips.index)
    held_groups: set[str] = set()
    for domain, part in clips.groupby("domain", sort=True):
        groups = all_groups[part.index]
        names = sorted(set(groups))
        if len(names) < 2:
            continue  # one group cannot be split: the domain stays in training (reported as such)
        sizes = groups.value_counts()
        target = fraction * len(part)
        taken, n = [], 0
        for g in rng.permutation(names):
            if taken and n + sizes[g] / 2 > target:
                break
            taken.append(g)
            n += sizes[g]
            if len(taken) == len(names) - 1:
                break
        held_groups.update(taken)
    held_set = set(clips["clip_id"][all_groups.isin(held_groups).to_numpy()].astype(str))
    train = [str(c) for c in clips["clip_id"] if str(c) not in held_set]
    return {"format": FORMAT, "by": by, "fraction": float(fraction), "seed": int(seed),
            "train_clips": train, "heldout_clips": sorted(held_set)}


def read_clip_list(path: str | os.PathLike) -> list[str]:
    """Clip ids from a ``holdout.json`` (its ``heldout_clips``), a JSON list or a text file (one per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"holdout file {path} does not exist")
    text = path.read_text()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if isinstance(obj, dict):
        if "heldout_clips" not in obj:
            raise ValueError(f"{path}: a JSON object needs 'heldout_clips'")
        return [str(c) for c in obj["heldout_clips"]]
    if isinstance(obj, list):
        return [str(c) for c in obj]
    raise ValueError(f"{path}: expected a JSON list or object of clip ids, got {type(obj).__name__}")


def decide(cache, fraction: float | None = None, by: str = "speaker", seed: int = 0,
           holdout_file: str | os.PathLike | None = None) -> dict | None:
    """The split for a training run on ``cache`` (``--holdout-clips FRACTION`` or ``--holdout-file``),
    or None when neither is given (train on every clip)."""
    if fraction is None and holdout_file is None:
        return None
    clips = clip_table(cache)
    if holdout_file is not None:
        wanted = set(read_clip_list(holdout_file))
        unknown = wanted - set(clips["clip_id"])
        if unknown:
            raise ValueError(f"--holdout-file {holdout_file}: {len(unknown)} clip id(s) not in cache {cache.root}, "
                             f"e.g. {sorted(unknown)[:3]}")
        split = {"format": FORMAT, "by": "file", "fraction": len(wanted) / max(1, len(clips)), "seed": None,
                 "file": str(holdout_file), "heldout_clips": sorted(wanted),
                 "train_clips": [c for c in clips["clip_id"] if c not in wanted]}
    else:
        split = split_clips(clips, fraction, by, seed)
    if not split["train_clips"]:
        raise ValueError("the holdout split leaves no training clips")
    split["cache"] = str(cache.root)
    return split


def training_rows(cache, hook: str, split: dict | None) -> np.ndarray | None:
    """Row indices of ``hook``'s frames from the split's training clips (None: all rows)."""
    if split is None:
        return None
    return cache.select(hook, clips=split["train_clips"])


def write(out: str | os.PathLike, split: dict) -> Path:
    """Write ``split`` as ``out/holdout.json`` (atomic)."""
    return write_json(Path(out) / HOLDOUT_FILE, split, indent=1)


def find(sae_dir: str | os.PathLike) -> Path | None:
    """The ``holdout.json`` of the run that trained the SAE in ``sae_dir`` (its folder or the run folder above)."""
    sae_dir = Path(sae_dir)
    for folder in (sae_dir, sae_dir.parent):
        if (folder / HOLDOUT_FILE).is_file():
            return folder / HOLDOUT_FILE
    return None


def load(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        split = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read holdout file {path}: {e}") from e
    if not isinstance(split, dict) or "train_clips" not in split:
        raise ValueError(f"{path}: not a holdout.json (no 'train_clips')")
    return split


def heldout_clips(cache_clip_ids: Iterable[str], split: dict) -> list[str]:
    """Clips of a cache that the SAE did not train on (in cache order)."""
    train = set(split["train_clips"])
    return [c for c in cache_clip_ids if c not in train]


def eval_selection(cache, sae_dir: str | os.PathLike, holdout_file: str | os.PathLike | None = None) -> dict:
    """The clips ``sae eval`` scores for the SAE in ``sae_dir`` on ``cache``.

    ``holdout_file`` given: exactly its clips (a ``holdout.json``'s ``heldout_clips`` or a list).
    Else the training run's ``holdout.json`` (:func:`find`): every cached clip not in its
    ``train_clips``. Else all clips, marked ``in_sample`` (the SAE may have trained on them).
    Returns ``{"clips", "in_sample", "source"}``.
    """
    ids = list(cache.clip_ids)
    if holdout_file is not None:
        wanted = set(read_clip_list(holdout_file))
        missing = wanted - set(ids)
        if missing:
            raise ValueError(f"--holdout-file {holdout_file}: {len(missing)} clip id(s) not in cache {cache.root}, "
                             f"e.g. {sorted(missing)[:3]}")
        clips, source = [c for c in ids if c in wanted], str(holdout_file)
        split_path = find(sae_dir)
        if split_path is not None:  # a file that names training clips would make the figures in-sample
            leaked = set(clips) & set(load(split_path)["train_clips"])
            if leaked:
                raise ValueError(f"--holdout-file {holdout_file} names {len(leaked)} clip(s) the SAE trained on "
                                 f"({split_path}), e.g. {sorted(leaked)[:3]}")
        return {"clips": clips, "in_sample": False, "source": source}
    split_path = find(sae_dir)
    if split_path is None:
        return {"clips": ids, "in_sample": True, "source": None}
    clips = heldout_clips(ids, load(split_path))
    if not clips:
        raise ValueError(f"every clip of cache {cache.root} is a training clip of {sae_dir} ({split_path}): "
                         "nothing held out to evaluate on")
    return {"clips": clips, "in_sample": False, "source": str(split_path)}


def for_training(cache, out: str | os.PathLike | None, fraction: float | None = None, by: str = "speaker",
                 seed: int = 0, holdout_file: str | os.PathLike | None = None) -> dict | None:
    """The split a training run uses, written to ``out/holdout.json`` before training starts.

    A run folder that already has a ``holdout.json`` (a resumed run) keeps it, whatever is passed
    now: the held-out clips must not change half-way. Returns None when no split was asked for.
    """
    existing = Path(out) / HOLDOUT_FILE if out is not None else None
    if existing is not None and existing.is_file():
        split = load(existing)
        unknown = set(split["train_clips"]) - set(cache.clip_ids)
        if unknown:
            raise ValueError(f"{existing} names training clips not in cache {cache.root}, e.g. {sorted(unknown)[:3]}")
        return split
    split = decide(cache, fraction, by, seed, holdout_file)
    if split is not None and out is not None:
        write(out, split)
    return split


def source_without_heldout(cache, hooks, cfg, split: dict | None, max_norm_ratio: float | None = 10.0):
    """A :class:`~sae.data.CacheSource` over the training clips' frames (all clips without a split),
    dropping frames above ``max_norm_ratio`` x the median norm (None: train on every frame)."""
    from sae.data import CacheSource

    if split is None:
        return CacheSource(cache, hooks, cfg.batch_size, cfg.seed, max_norm_ratio=max_norm_ratio)

    tables = {cache.meta["hook_info"][h]["frame_table"] for h in hooks}
    if len(tables) > 1:
        raise ValueError(f"a holdout split over hooks with different frame tables {sorted(tables)} is not supported: "
                         "train those hooks in separate runs with the same --holdout-file")
    return CacheSource(cache, hooks, cfg.batch_size, cfg.seed, rows=training_rows(cache, hooks[0], split),
                       max_norm_ratio=max_norm_ratio)
