"""On-disk layout of an activation cache and its crash-safe index.

::

    <cache>/cache.json                      model, hooks, frame rates, dtype, corpus fingerprint, versions
    <cache>/corpus.jsonl                    the corpus (clips with tiers) the cache was built from
    <cache>/index.json                      what is committed: consolidated data + pending pieces
    <cache>/hooks/<hook>/acts_g0001.bin     [N, D] raw row-major fp16/bf16 (int32: integer hooks), one per hook
    <cache>/frames/<group>_g0001.parquet    frame table of the hooks of one frame rate
    <cache>/hooks/<hook>/shard_*.bin        per-batch shards not merged yet (a crashed or running build)
    <cache>/frames/<group>/part_*.parquet   their frame-table parts
    <cache>/progress/*.json                 one commit record per written batch (written last)
    <cache>/errors.jsonl, summary.json      skipped clips; end-of-build summary

Every file is recorded in the index with its size and sha256 (``bytes``, ``sha256``) when it
is written, so damage is found (:mod:`workbench.cache.verify`) and a rerun redoes those clips.

Commit protocol: every file is written to a temp name then ``os.replace``-d; a batch's
commit record is written after all its shards, so a batch without one never happened
(its files are orphans and are deleted on the next build). When a build finishes, rank 0
merges every piece, in corpus clip order, into one file per hook (``acts_g<gen>.bin``),
writes ``index.json`` pointing at it, and only then deletes the pieces.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from workbench.atomic import atomic_path, read_json, write_bytes, write_json
from workbench.names import UnsafeNameError, check_component

from workbench.cache import frames as ft

FORMAT = 1
CACHE_JSON = "cache.json"
INDEX_JSON = "index.json"
CORPUS_JSONL = "corpus.jsonl"
ERRORS_JSONL = "errors.jsonl"
SUMMARY_JSON = "summary.json"
_OWN = {CACHE_JSON, INDEX_JSON, CORPUS_JSONL, ERRORS_JSONL, SUMMARY_JSON, "hooks", "frames", "progress", ".lock", ".stalled"}


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """The cache's JSON convention (indent 1, ``str`` for odd types), durable (fsync) and atomic."""
    write_json(path, obj, fsync=True, indent=1, default=str)


def write_bytes_atomic(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write a contiguous array's raw bytes (one ``write`` call, no per-row loop), durably and atomically."""
    write_bytes(path, memoryview(np.ascontiguousarray(arr)).cast("B"), fsync=True)


def storage_dtype(dtype: str) -> np.dtype:
    """numpy dtype of the raw bytes: float16, or uint16 holding bfloat16 bits."""
    if dtype == "float16":
        return np.dtype(np.float16)
    if dtype == "bfloat16":
        return np.dtype(np.uint16)
    raise ValueError(f"cache dtype must be 'float16' or 'bfloat16', got {dtype!r}")


#: storage dtype of integer hooks (token ids, codec codes): exact, unlike fp16 (> 2048) or bf16 (> 256)
INT_DTYPE = "int32"


def hook_dtypes(meta: dict[str, Any]) -> dict[str, str]:
    """Storage dtype name of every hook of a cache.json dict: ``meta["hook_dtypes"]``, else the
    cache dtype (caches written before integer hooks were stored as int32 lack the field)."""
    given = meta.get("hook_dtypes") or {}
    return {h: given.get(h, meta["dtype"]) for h in meta["hooks"]}


def hook_storage_dtype(meta: dict[str, Any], hook: str) -> np.dtype:
    """numpy dtype of ``hook``'s raw bytes in a cache described by ``meta``."""
    name = hook_dtypes(meta).get(hook, meta["dtype"])
    return np.dtype(np.int32) if name == INT_DTYPE else storage_dtype(name)


def is_foreign_dir(out: Path) -> bool:
    """True if ``out`` holds files that are not ours and no cache.json (refuse to write there)."""
    if not out.is_dir() or (out / CACHE_JSON).exists():
        return False
    return any(p.name not in _OWN and not p.name.endswith(".tmp") for p in out.iterdir())


def empty_index() -> dict[str, Any]:
    return {"format": FORMAT, "generation": 0, "final": None, "pieces": [], "failed": {}}


def piece_id(p: dict[str, Any]) -> str:
    return f"r{p['rank']}_{p['run']}_{p['seq']:05d}"


class Store:
    """Paths and index bookkeeping of one cache directory."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # --- paths ---------------------------------------------------------------------------------
    def hook_dir(self, hook: str) -> Path:
        return self.root / "hooks" / check_component(hook, "hook", self.root / CACHE_JSON)  # never ../ out of the cache

    def shard_path(self, hook: str, pid: str) -> Path:
        return self.hook_dir(hook) / f"shard_{pid}.bin"

    def part_path(self, group: str, pid: str) -> Path:
        return self.root / "frames" / group / f"part_{pid}.parquet"

    def progress_path(self, pid: str) -> Path:
        return self.root / "progress" / f"{pid}.json"

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()

    def abs(self, rel: str) -> Path:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:  # an edited index.json must not read outside the cache
            raise UnsafeNameError(f"{self.root / INDEX_JSON}: file {rel!r} is outside the cache {self.root}")
        return self.root / rel

    def make_dirs(self, hooks: Iterable[str], groups: Iterable[str]) -> None:
        for h in hooks:
            self.hook_dir(h).mkdir(parents=True, exist_ok=True)
        for g in groups:
            (self.root / "frames" / g).mkdir(parents=True, exist_ok=True)
        (self.root / "progress").mkdir(parents=True, exist_ok=True)

    # --- index ---------------------------------------------------------------------------------
    def read_index(self) -> dict[str, Any]:
        p = self.root / INDEX_JSON
        return read_json(p) if p.exists() else empty_index()

    def pending_records(self) -> list[dict[str, Any]]:
        d = self.root / "progress"
        if not d.is_dir():
            return []
        return [read_json(p) for p in sorted(d.glob("*.json"))]

    def collect(self) -> dict[str, Any]:
        """index.json plus every committed batch record not folded into it yet."""
        index = self.read_index()
        known = {piece_id(p) for p in index["pieces"]}
        for rec in self.pending_records():
            if piece_id(rec) not in known:
                index["pieces"].append(rec)
                known.add(piece_id(rec))
            index["failed"].update(rec.get("failed", {}))
        for cid in Store.done_ids(index):  # a failed clip that a later run cached is no longer failed
            index["failed"].pop(cid, None)
        return index

    def fold_progress(self) -> dict[str, Any]:
        """Move commit records into index.json (index first, then delete the records)."""
        index = self.collect()
        write_json_atomic(self.root / INDEX_JSON, index)
        for p in (self.root / "progress").glob("*.json"):
            p.unlink()
        return index

    @staticmethod
    def done_ids(index: dict[str, Any]) -> set[str]:
        """Clips whose frames are committed. Failed clips (``index["failed"]``) are not done: a rerun
        tries them again, and the cache is not complete while any failed."""
        done: set[str] = set()
        if index["final"]:
            done.update(index["final"]["clips"])
        for p in index["pieces"]:
            done.update(p["clips"])
        return done

    def referenced(self, index: dict[str, Any]) -> set[Path]:
        files = []
        for src in ([index["final"]] if index["final"] else []) + index["pieces"]:
            files += [h["file"] for h in src["hooks"].values() if h["file"]]
            files += [g["file"] for g in src["frames"].values() if g["file"]]
        return {self.abs(f) for f in files}

    def remove_orphans(self, index: dict[str, Any]) -> list[Path]:
        """Delete temp files and shards/parts/acts that no committed record mentions."""
        keep = self.referenced(index)
        removed = []
        for sub in ("hooks", "frames", "progress"):
            base = self.root / sub
            if not base.is_dir():
                continue
            for p in base.rglob("*"):
                if p.is_file() and p not in keep and not (sub == "progress" and p.suffix == ".json"):
                    p.unlink()
                    removed.append(p)
        for p in self.root.glob("*.tmp"):
            p.unlink()
            removed.append(p)
        return removed

    # --- merge ---------------------------------------------------------------------------------
    def consolidate(self, index: dict[str, Any], meta: dict[str, Any], corpus_order: list[str]) -> dict[str, Any]:
        """Merge the final data and all pieces into one file per hook, in corpus order.

        Crash-safe: the merged files get a new generation name, index.json is switched
        to them atomically, and only then are the sources deleted.
        """
        from workbench.cache.verify import file_record

        sources = ([index["final"]] if index["final"] else []) + index["pieces"]
        if index["final"] and not index["pieces"]:
            return index
        gen = index["generation"] + 1
        pos = {cid: i for i, cid in enumerate(corpus_order)}
        clips = sorted({c for s in sources for c in s["clips"]}, key=lambda c: pos.get(c, len(pos)))
        schema = ft.FrameSchema.from_json(meta["frame_schema"])
        final: dict[str, Any] = {"clips": clips, "clip_rows": {}, "hooks": {}, "frames": {}}
        for group, ginfo in meta["frame_tables"].items():
            runs, rows_of = _copy_plan(sources, group, pos)
            final["clip_rows"][group] = [rows_of.get(c, 0) for c in clips]
            n = sum(final["clip_rows"][group])
            for hook in ginfo["hooks"]:
                d = _d_model(sources, hook)
                path = self.hook_dir(hook) / f"acts_g{gen:04d}.bin"
                self._merge_hook(sources, hook, runs, path, hook_storage_dtype(meta, hook), d)
                final["hooks"][hook] = {"file": self.rel(path), "rows": n, "d_model": d, **file_record(path)}
            path = self.root / "frames" / f"{group}_g{gen:04d}.parquet"
            parts = [self.abs(s["frames"][group]["file"]) for s in sources if s["frames"][group]["file"]]
            table = ft.read_table(parts, schema)
            order = _frame_order(sources, group, runs)
            ft.write_table_atomic(table.take(order) if order is not None else table, path)
            final["frames"][group] = {"file": self.rel(path), "rows": n, **file_record(path)}
        maybe_stall(self.root, "merge", gen - 1)
        new_index = {"format": FORMAT, "generation": gen, "final": final, "pieces": [], "failed": index["failed"]}
        write_json_atomic(self.root / INDEX_JSON, new_index)
        for p in (self.root / "progress").glob("*.json"):
            p.unlink()
        self.remove_orphans(new_index)
        return new_index

    def _merge_hook(self, sources, hook, runs, path: Path, sdtype: np.dtype, d: int) -> None:
        files = [s["hooks"][hook]["file"] for s in sources]
        with atomic_path(path, fsync=True) as tmp:
            if len(runs) == 1 and runs[0][1] == 0 and files[runs[0][0]]:
                # one source already in order: hard-link it (no copy); the old name is deleted later
                src = self.abs(files[runs[0][0]])
                tmp.unlink()
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
            else:
                row_bytes = d * sdtype.itemsize
                with open(tmp, "wb") as out:
                    for si, start, stop in runs:
                        with open(self.abs(files[si]), "rb") as src:
                            _copy_range(src, out, start * row_bytes, (stop - start) * row_bytes)


def _copy_range(src, dst, offset: int, count: int) -> None:
    """Append ``count`` bytes of ``src`` from ``offset`` to ``dst`` (in the kernel where possible)."""
    dst.flush()
    pos = dst.tell()
    while count > 0:
        try:
            n = os.copy_file_range(src.fileno(), dst.fileno(), min(count, 1 << 30), offset, pos)
        except (AttributeError, OSError):
            n = 0
        if n <= 0:  # not supported here: plain buffered copy
            src.seek(offset)
            while count > 0:
                chunk = src.read(min(count, 1 << 24))
                if not chunk:
                    raise OSError(f"{src.name}: shorter than its index says")
                os.pwrite(dst.fileno(), chunk, pos)
                offset, pos, count = offset + len(chunk), pos + len(chunk), count - len(chunk)
            break
        offset, pos, count = offset + n, pos + n, count - n
    dst.seek(pos)


def _d_model(sources, hook: str) -> int:
    for s in sources:
        if s["hooks"][hook].get("d_model"):
            return int(s["hooks"][hook]["d_model"])
    return 0


def _copy_plan(sources, group: str, pos: dict[str, int]):
    """Row runs ``(source, start, stop)`` that lay out every clip's frames in corpus order."""
    spans = []  # (corpus position, source, start row, stop row)
    rows_of: dict[str, int] = {}
    for si, s in enumerate(sources):
        off = 0
        for cid, n in zip(s["clips"], s["clip_rows"][group]):
            if cid in rows_of:  # never merge a clip twice (would duplicate its frames)
                raise RuntimeError(f"clip {cid!r} is recorded twice in the cache index; rebuild the cache")
            spans.append((pos.get(cid, len(pos)), si, off, off + n))
            rows_of[cid] = n
            off += n
    spans.sort()
    runs: list[tuple[int, int, int]] = []
    for _p, si, a, b in spans:
        if b == a:
            continue
        if runs and runs[-1][0] == si and runs[-1][2] == a:
            runs[-1] = (si, runs[-1][1], b)
        else:
            runs.append((si, a, b))
    return runs, rows_of


def _frame_order(sources, group: str, runs) -> np.ndarray | None:
    """Row permutation of the concatenated frame parts matching ``runs`` (None = identity)."""
    offsets, off = [], 0
    for s in sources:
        offsets.append(off)
        off += sum(s["clip_rows"][group]) if s["frames"][group]["file"] else 0
    order = np.concatenate([np.arange(offsets[si] + a, offsets[si] + b) for si, a, b in runs]) if runs else None
    if order is None or (len(order) == off and np.array_equal(order, np.arange(off))):
        return None
    return order


#: test hook: "<stage>:<n>" makes a build stall at that point (after touching <cache>/.stalled) so a
#: test can SIGKILL it at a known moment. Stages: "shards" (batch n's shard files written, no commit),
#: "commit" (batch n committed), "merge" (merged files of generation n+1 written, index not switched).
STALL_ENV = "WORKBENCH_CACHE_STALL"


def maybe_stall(root: Path, stage: str, n: int) -> None:
    want = os.environ.get(STALL_ENV, "")
    if want and want == f"{stage}:{n}":
        (Path(root) / ".stalled").write_text(want)
        while True:  # wait to be killed
            time.sleep(1.0)
