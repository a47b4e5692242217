"""What an analysis records about the cache it read, and whether it may read it at all.

- :func:`build_state`: ``complete``, ``running`` (a live process holds the build lock: its pid,
  host, start and command) or ``interrupted`` (incomplete, nobody building it).
- :func:`cache_inputs`: the inputs an artifact made from a cache records in ``inputs.json``
  (:func:`workbench.atomic.artifact_dir`): the cache's fingerprint (its settings plus the
  checksum of every merged file), its corpus fingerprint, model and completeness. A run that
  continues an artifact compares them, so it cannot silently mix two datasets.
- :func:`require_complete`: analyses (``probe``, ``sae train|eval``, ``neuro fit --cache``)
  refuse a cache whose build did not finish unless ``--allow-incomplete``; the returned record
  goes into their outputs.

Example
-------
>>> from workbench.cache import ActivationCache                       # doctest: +SKIP
>>> cache = ActivationCache.open("work/cache")                        # doctest: +SKIP
>>> build_state(cache.root)["state"]                                  # doctest: +SKIP
'complete'
>>> require_complete(cache, allow_incomplete=False)                   # doctest: +SKIP
{'complete': True, 'allow_incomplete': False, 'clips': 13, 'corpus_clips': 13, 'state': 'complete'}
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from workbench.atomic import read_json
from workbench.lock import lock_holder

__all__ = ["IncompleteCacheError", "build_state", "cache_fingerprint", "cache_inputs", "require_complete"]


class IncompleteCacheError(ValueError):
    """An analysis was given a cache whose build did not finish (and no ``--allow-incomplete``)."""


def build_state(root: str | os.PathLike) -> dict[str, Any]:
    """``{"state": "complete" | "running" | "interrupted", "holder": lock record or None}``."""
    root = Path(root)
    holder = lock_holder(root / ".lock")
    try:
        complete = bool(read_json(root / "cache.json").get("complete"))
    except (OSError, ValueError):
        complete = False
    if holder is not None:
        return {"state": "running", "holder": holder}
    return {"state": "complete" if complete else "interrupted", "holder": None}


def describe_state(root: str | os.PathLike, state: dict[str, Any] | None = None) -> str:
    """One phrase for messages: "its build is still running (pid ...)" / "its build was interrupted ..."."""
    state = state or build_state(root)
    if state["state"] == "running":
        h = state["holder"] or {}
        return (f"its build is still running (pid {h.get('pid')} on {h.get('host')} since {h.get('started')}"
                f"{': ' + h['command'] if h.get('command') else ''})")
    if state["state"] == "interrupted":
        return "its build was interrupted: rerun `workbench cache` with the same arguments to finish it"
    return "complete"


def cache_fingerprint(cache) -> str:
    """16 hex digits over the cache's settings and every merged file's checksum (or size)."""
    from workbench.cache.meta import COMPAT_FIELDS, _get

    index = read_json(Path(cache.root) / "index.json")
    final = index.get("final") or {}
    files = {k: {f: v.get(f) for f in ("rows", "sha256", "bytes")}
             for part in ("hooks", "frames") for k, v in sorted((final.get(part) or {}).items())}
    blob = {"settings": {f: _get(cache.meta, f) for f in COMPAT_FIELDS}, "clips": final.get("clips"), "files": files}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_inputs(cache) -> dict[str, Any]:
    """What an artifact made from ``cache`` depends on (compared when it is continued)."""
    meta = cache.meta
    return {"cache_fingerprint": cache_fingerprint(cache), "corpus_fingerprint": meta["corpus"]["fingerprint"],
            "model": meta["model"].get("spec")}


def require_complete(cache, allow_incomplete: bool = False, flag: str = "--allow-incomplete") -> dict[str, Any]:
    """Refuse an incomplete cache unless ``allow_incomplete``; returns the record for the outputs."""
    import logging

    state = build_state(cache.root)
    complete = bool(cache.meta.get("complete")) and state["state"] == "complete"
    record = {"complete": complete, "allow_incomplete": bool(allow_incomplete), "clips": len(cache.clip_ids),
              "corpus_clips": cache.meta["corpus"].get("clips"), "state": state["state"]}
    if complete:
        return record
    what = (f"cache {cache.root} is incomplete ({record['clips']} of {record['corpus_clips']} clips; "
            f"{describe_state(cache.root, state)})")
    if not allow_incomplete:
        raise IncompleteCacheError(f"{what}; pass {flag} to use it anyway (recorded in the outputs)")
    logging.getLogger("workbench").warning("%s; used anyway (%s), as recorded in the outputs", what, flag)
    return record


def add_allow_incomplete(parser, where: str = "the outputs") -> None:
    """Add ``--allow-incomplete`` to a sub-command's parser (one wording everywhere)."""
    parser.add_argument("--allow-incomplete", action="store_true",
                        help=f"use a cache whose build did not finish (recorded in {where})")


def open_complete(root: str | os.PathLike, allow_incomplete: bool = False):
    """``ActivationCache.open(root)``, refusing an incomplete cache unless ``allow_incomplete``
    (:func:`require_complete`; the record is in ``cache.completeness``)."""
    from workbench.cache import ActivationCache

    cache = ActivationCache.open(root)
    cache.completeness = require_complete(cache, allow_incomplete)
    return cache
