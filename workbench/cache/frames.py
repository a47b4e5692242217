"""Frame tables: one row per cached activation frame, with every label at the frame centre.

A frame table row ``i`` describes row ``i`` of a hook's activation matrix: ``clip_id``,
``frame`` (index within the clip), ``start_s``/``end_s``, ``domain``, ``speaker``, one
column per tier (the label active at the frame centre, None in gaps), ``<tier>_seg``
(index of that segment within the clip's tier, -1 in gaps) and any manifest extras.

The column set is fixed once per corpus (:func:`schema_from_corpus`) so that the
parquet parts written batch by batch share one arrow schema and concatenate cleanly.

Example
-------
>>> from workbench.corpus.types import Clip, Segment
>>> clip = Clip("a", "a.wav", tiers={"phones": [Segment(0.0, 0.03, "sil"), Segment(0.03, 0.1, "AH")]})
>>> schema = FrameSchema.from_clips([clip])
>>> times = np.array([[0.0, 0.02], [0.02, 0.04], [0.04, 0.06]])
>>> clip_columns(clip, times, schema)["phones"].tolist()
['sil', 'AH', 'AH']
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.atomic import atomic_path
from workbench.corpus.types import Clip, Segment

BASE_COLUMNS = ("clip_id", "frame", "start_s", "end_s", "domain", "speaker")
#: tiers whose per-frame label replaces the clip-level attribute of the same name where defined
_OVERRIDABLE = {"domain", "speaker"}


@dataclass
class FrameSchema:
    """Which tier and manifest-extra columns a corpus's frame tables have.

    ``extras`` maps a manifest key to ``(column name, kind)``; kind is one of ``str``,
    ``int``, ``float``, ``bool`` or ``json`` (values that are lists/dicts or of mixed
    types are stored as JSON text so every part of the table has the same type).
    """

    tiers: list[str] = field(default_factory=list)
    extras: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def from_clips(cls, clips: Iterable[Clip]) -> "FrameSchema":
        clips = list(clips)
        tiers = sorted({t for c in clips for t in c.tiers})
        kinds: dict[str, set[str]] = {}
        for c in clips:
            for k, v in c.extra.items():
                kinds.setdefault(k, set())
                if v is not None:
                    kinds[k].add(_kind_of(v))
        taken = set(BASE_COLUMNS) | set(tiers) | {f"{t}_seg" for t in tiers}
        extras: dict[str, tuple[str, str]] = {}
        for k in sorted(kinds):
            col = k
            while col in taken:  # never let a manifest field shadow a label column
                col = f"extra_{col}"
            taken.add(col)
            extras[k] = (col, _merge_kinds(kinds[k]))
        return cls(tiers=tiers, extras=extras)

    def tier_column(self, tier: str) -> str:
        """Column holding ``tier``'s label (a tier called e.g. ``frame`` must not clobber the index)."""
        if tier in BASE_COLUMNS and tier not in _OVERRIDABLE:
            return f"tier_{tier}"
        return tier

    def arrow_schema(self) -> pa.Schema:
        fields = [
            pa.field("clip_id", pa.string()),
            pa.field("frame", pa.int32()),
            pa.field("start_s", pa.float64()),
            pa.field("end_s", pa.float64()),
            pa.field("domain", pa.string()),
            pa.field("speaker", pa.string()),
        ]
        for t in self.tiers:
            col = self.tier_column(t)
            if col not in _OVERRIDABLE:
                fields.append(pa.field(col, pa.string()))
            fields.append(pa.field(f"{t}_seg", pa.int32()))
        for _key, (col, kind) in self.extras.items():
            fields.append(pa.field(col, _ARROW_KIND[kind]))
        return pa.schema(fields)

    def to_json(self) -> dict[str, Any]:
        return {"tiers": self.tiers, "extras": {k: list(v) for k, v in self.extras.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "FrameSchema":
        return cls(tiers=list(d["tiers"]), extras={k: (v[0], v[1]) for k, v in d["extras"].items()})


_ARROW_KIND = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "json": pa.string()}


def _kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return "json"


def _merge_kinds(kinds: set[str]) -> str:
    if not kinds:
        return "str"  # only None values: a string column of nulls
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds == {"int", "float"}:
        return "float"
    return "json"


def _extra_value(v: Any, kind: str) -> Any:
    if v is None:
        return None
    if kind == "json":
        return json.dumps(v, sort_keys=True, default=str)
    if kind == "float":
        return float(v)
    return v


def labels_at(segments: Sequence[Segment], centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label and segment index active at each time (``start <= t < end``), vectorised.

    Same rule as :meth:`Clip.label_at`: the last segment starting at or before ``t``
    counts if ``t`` is before its end. Returns ``(labels[object], seg_index[int32])``
    with None / -1 where no segment is active.
    """
    n = len(centres)
    labels = np.full(n, None, dtype=object)
    seg = np.full(n, -1, dtype=np.int32)
    if not segments or n == 0:
        return labels, seg
    starts = np.array([s.start_s for s in segments], dtype=np.float64)
    order = np.argsort(starts, kind="stable")  # the index we report is into the tier as given
    starts = starts[order]
    ends = np.array([segments[j].end_s for j in order], dtype=np.float64)
    names = np.array([segments[j].label for j in order], dtype=object)
    i = np.searchsorted(starts, centres, side="right") - 1
    ok = i >= 0
    ok[ok] = centres[ok] < ends[i[ok]]
    labels[ok] = names[i[ok]]
    seg[ok] = order[i[ok]].astype(np.int32)
    return labels, seg


def clip_columns(clip: Clip, times: np.ndarray, schema: FrameSchema) -> dict[str, np.ndarray]:
    """Frame-table columns for one clip whose frames span ``times`` (``[n, 2]`` seconds)."""
    times = np.asarray(times, dtype=np.float64).reshape(-1, 2)
    n = len(times)
    centres = times.mean(axis=1)
    cols: dict[str, np.ndarray] = {
        "clip_id": np.full(n, clip.id, dtype=object),
        "frame": np.arange(n, dtype=np.int32),
        "start_s": times[:, 0].copy(),
        "end_s": times[:, 1].copy(),
        "domain": np.full(n, clip.domain, dtype=object),
        "speaker": np.full(n, clip.speaker, dtype=object),
    }
    for t in schema.tiers:
        lab, seg = labels_at(clip.tiers.get(t, []), centres)
        col = schema.tier_column(t)
        if col in _OVERRIDABLE:  # a per-frame speaker/domain tier refines the clip-level value
            has = seg >= 0
            cols[col] = np.where(has, lab, cols[col])
        else:
            cols[col] = lab
        cols[f"{t}_seg"] = seg
    for key, (col, kind) in schema.extras.items():
        cols[col] = np.full(n, _extra_value(clip.extra.get(key), kind), dtype=object)
    return cols


def to_arrow(parts: Sequence[dict[str, np.ndarray]], schema: FrameSchema) -> pa.Table:
    """Concatenate per-clip column dicts into one arrow table with the corpus schema."""
    arrow_schema = schema.arrow_schema()
    arrays = []
    for f in arrow_schema:
        chunks = [p[f.name] for p in parts]
        values = np.concatenate(chunks) if chunks else np.array([], dtype=object)
        arrays.append(pa.array(values, type=f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=arrow_schema)


def write_table_atomic(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write a parquet file durably via a temp name, so no reader sees half a file."""
    with atomic_path(path, fsync=True) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_table(paths: Sequence[str | os.PathLike], schema: FrameSchema) -> pa.Table:
    """Read and concatenate parquet parts (in the given order); a damaged part raises naming it."""
    arrow_schema = schema.arrow_schema()
    if not paths:
        return arrow_schema.empty_table()
    tables = []
    for p in paths:
        try:
            tables.append(pq.read_table(p, schema=arrow_schema))
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"{p}: unreadable frame table (damaged? `workbench cache-info --verify` checks the "
                             f"cache; rerun `workbench cache` to redo it): {e}") from None
    return pa.concat_tables(tables)


def to_pandas(table: pa.Table):
    """Arrow table -> DataFrame; text columns become object arrays holding None for "no label"."""
    import pandas as pd

    data = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            data[name] = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
        else:
            data[name] = col.to_pandas()
    return pd.DataFrame(data)
