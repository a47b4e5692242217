"""Find damaged cache files, and repair the index so a rerun redoes only the damaged clips.

Every shard, merged activation file and frame-table file is recorded in the index with its
size (``bytes``) and ``sha256`` when it is written. :func:`find_damage` compares the files
with the index: existence and sizes always (cheap: one ``stat`` per file, done by
:meth:`ActivationCache.open <workbench.cache.reader.ActivationCache.open>`), checksums on
request (``workbench cache-info --verify``, ``workbench cache --verify``). Activation files
are checked against ``rows x d_model x itemsize`` too, so caches written before sizes were
recorded are covered (their checksums are not: there is nothing to compare with).

:func:`repair_index` (run by every ``workbench cache`` before it resumes) drops damaged
uncommitted pieces, and cuts the merged data back to the longest prefix of clips whose
bytes are all present (a truncated file keeps its intact clips; a checksum mismatch cannot
be localised, so that frame table's clips are all redone). The clips it drops are no longer
"done", so the build caches them again.

Example
-------
>>> from workbench.cache.verify import find_damage
>>> problems = find_damage(Store("work/cache"), meta, index, checksums=True)   # doctest: +SKIP
>>> [p.file for p in problems]                                                   # doctest: +SKIP
['hooks/encoder.blocks.3.hook_resid_post/acts_g0001.bin']
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.cache import frames as ft
from workbench.cache.store import INDEX_JSON, Store, hook_storage_dtype, write_json_atomic

logger = logging.getLogger(__name__)

__all__ = ["CacheDamagedError", "Damage", "file_record", "bytes_record", "find_damage", "repair_index",
           "raise_if_damaged", "checksum_coverage"]

_RERUN = "rerun `workbench cache` with the same arguments: it redoes the damaged clips"


class CacheDamagedError(RuntimeError):
    """A cache file is missing, has the wrong size or the wrong checksum; the message names it."""


@dataclass
class Damage:
    """One damaged file: ``file`` relative to the cache root; ``where`` "final" or a piece id."""

    file: str
    problem: str
    where: str
    group: str | None = None
    intact_rows: int | None = None  # rows of the file still readable (truncation), None: none trusted

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


def _sha256_file(path: os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_record(path: os.PathLike) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of a file as written (recorded in the index next to its name)."""
    return {"bytes": os.path.getsize(path), "sha256": _sha256_file(path)}


def bytes_record(data: np.ndarray) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of an array's raw bytes, without reading the written file back."""
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    return {"bytes": view.nbytes, "sha256": hashlib.sha256(view).hexdigest()}


def _check_file(store: Store, entry: dict[str, Any], expected_bytes: int | None, checksums: bool,
                where: str, group: str | None, row_bytes: int | None = None) -> Damage | None:
    rel = entry["file"]
    path = store.abs(rel)
    if not path.is_file():
        return Damage(rel, "missing", where, group, 0)
    size = path.stat().st_size
    want = expected_bytes if expected_bytes is not None else entry.get("bytes")
    if want is not None and size != want:
        intact = size // row_bytes if row_bytes and size < want else None
        kind = "truncated" if size < want else "longer than recorded"
        return Damage(rel, f"{kind}: {size} bytes, the index records {want}", where, group, intact)
    if checksums and entry.get("sha256"):
        got = _sha256_file(path)
        if got != entry["sha256"]:
            return Damage(rel, f"checksum mismatch (sha256 {got[:12]}..., recorded {entry['sha256'][:12]}...)",
                          where, group, None)
    return None


def _source_damage(store: Store, meta: dict[str, Any], src: dict[str, Any], where: str,
                   checksums: bool) -> list[Damage]:
    out: list[Damage] = []
    for group, ginfo in meta["frame_tables"].items():
        for hook in ginfo["hooks"]:
            info = src["hooks"].get(hook)
            if not info or not info.get("file"):
                continue
            row_bytes = int(info["d_model"]) * hook_storage_dtype(meta, hook).itemsize
            d = _check_file(store, info, int(info["rows"]) * row_bytes, checksums, where, group, row_bytes)
            if d is not None:
                out.append(d)
        part = src["frames"].get(group)
        if part and part.get("file"):
            d = _check_file(store, part, None, checksums, where, group)
            if d is not None:
                d.intact_rows = 0  # a damaged parquet file is not read partially
                out.append(d)
    return out


def find_damage(store: Store, meta: dict[str, Any], index: dict[str, Any], checksums: bool = False) -> list[Damage]:
    """Every damaged file that ``index`` (merged data and pending pieces) refers to."""
    from workbench.cache.store import piece_id

    out = _source_damage(store, meta, index["final"], "final", checksums) if index.get("final") else []
    for p in index.get("pieces", []):
        out += _source_damage(store, meta, p, piece_id(p), checksums)
    return out


def checksum_coverage(index: dict[str, Any]) -> tuple[int, int]:
    """``(files, files without a recorded sha256)`` of the merged data (old caches recorded none)."""
    final = index.get("final") or {"hooks": {}, "frames": {}}
    entries = [e for e in [*final["hooks"].values(), *final["frames"].values()] if e.get("file")]
    return len(entries), sum(1 for e in entries if not e.get("sha256"))


def raise_if_damaged(root, problems: list[Damage]) -> None:
    """:class:`CacheDamagedError` listing ``problems`` (if any) and how to repair them."""
    if problems:
        shown = "; ".join(str(p) for p in problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise CacheDamagedError(f"cache {root} is damaged: {shown}. To repair it, {_RERUN}")


def _intact_clips(meta: dict[str, Any], final: dict[str, Any], damage: list[Damage]) -> int:
    """How many leading clips of the merged data have every byte present in every file."""
    keep = len(final["clips"])
    for group in meta["frame_tables"]:
        ok_rows = None
        for d in damage:
            if d.group == group:
                rows = d.intact_rows or 0
                ok_rows = rows if ok_rows is None else min(ok_rows, rows)
        if ok_rows is None:
            continue
        cum = np.cumsum(final["clip_rows"][group])
        keep = min(keep, int(np.searchsorted(cum, ok_rows, side="right")))
    return keep


def _cut_final(store: Store, meta: dict[str, Any], final: dict[str, Any], keep: int) -> dict[str, Any] | None:
    """The merged data cut to its first ``keep`` clips (files truncated / rewritten in place)."""
    if keep == 0:
        return None  # every file becomes an orphan and is deleted; all clips are redone
    new = {"clips": final["clips"][:keep], "clip_rows": {}, "hooks": {}, "frames": {}}
    schema = ft.FrameSchema.from_json(meta["frame_schema"])
    for group, ginfo in meta["frame_tables"].items():
        rows = final["clip_rows"][group][:keep]
        n = int(sum(rows))
        new["clip_rows"][group] = rows
        for hook in ginfo["hooks"]:
            info = dict(final["hooks"][hook])
            row_bytes = int(info["d_model"]) * hook_storage_dtype(meta, hook).itemsize
            if info.get("file"):
                path = store.abs(info["file"])
                if path.stat().st_size > n * row_bytes:
                    os.truncate(path, n * row_bytes)
                info.update(file_record(path))
            info["rows"] = n
            new["hooks"][hook] = info
        part = dict(final["frames"][group])
        if part.get("file") and part["rows"] != n:
            path = store.abs(part["file"])
            table = ft.read_table([path], schema)
            ft.write_table_atomic(table.slice(0, n), path)
            part.update(file_record(path))
        part["rows"] = n
        new["frames"][group] = part
    return new


def repair_index(store: Store, meta: dict[str, Any], index: dict[str, Any], checksums: bool = False
                 ) -> tuple[dict[str, Any], list[Damage]]:
    """Drop what is damaged from ``index`` (and write it) so those clips count as not done.

    Returns the new index and the damage found. Uncommitted pieces with a damaged file are
    dropped whole; the merged data keeps its intact leading clips (see module docstring).
    """
    from workbench.cache.store import piece_id

    damage = find_damage(store, meta, index, checksums=checksums)
    if not damage:
        return index, []
    bad_pieces = {d.where for d in damage if d.where != "final"}
    pieces = [p for p in index["pieces"] if piece_id(p) not in bad_pieces]
    final = index["final"]
    final_damage = [d for d in damage if d.where == "final"]
    if final and final_damage:
        keep = _intact_clips(meta, final, final_damage)
        lost = len(final["clips"]) - keep
        final = _cut_final(store, meta, final, keep)
        logger.warning("cache %s: %d damaged file(s) (%s); %d of %d merged clips will be cached again",
                       store.root, len(final_damage), "; ".join(map(str, final_damage[:3])), lost,
                       lost + keep)
    for pid in sorted(bad_pieces):
        logger.warning("cache %s: dropping damaged batch %s (%s); its clips will be cached again", store.root, pid,
                       "; ".join(str(d) for d in damage if d.where == pid))
    new_index = {**index, "final": final, "pieces": pieces}
    write_json_atomic(store.root / INDEX_JSON, new_index)
    return new_index, damage
