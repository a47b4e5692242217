"""The :class:`~apps.data.Workspace` readers of an SAE's examples: a clip's codes, sampled whole clips,
firing events and bands (:mod:`apps.examples`), the SAE bench's explanations and the density plot.

A mixin of :class:`apps.data.Workspace` (the app's one data-access class); kept apart to keep modules small.

Example
-------
>>> ws = Workspace("workspace/demo")                                   # doctest: +SKIP
>>> ex = ws.feature_examples(ws.saes()[0], 42)                         # doctest: +SKIP
>>> ex["top"][["clip_id", "start_s", "activation", "n_frames"]]        # doctest: +SKIP
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from apps.data import SaeRef

QUANTILE_SAMPLE = 50_000  # frames (of whole clips) encoded once per SAE for the examples and bands


def _mtime(path: Path) -> float:
    from apps.data import _mtime as mtime

    return mtime(path)


class SaeExamples:
    """SAE example readers (methods of :class:`apps.data.Workspace`)."""

    def sae_at(self, path: str | os.PathLike) -> "SaeRef | None":
        """The workspace SAE saved at ``path`` (e.g. a steering artifact's ``sae``), or None."""
        p = Path(path).resolve()
        return next((r for r in self.saes() if r.sae_dir.resolve() == p), None)

    def explanations_file(self, ref: "SaeRef") -> Path | None:
        """Where the SAE bench's ``explanations.csv`` of ``ref`` is (None when not written): beside
        the SAE's ``eval.json`` (``sae bench --out saes/NAME/eval``: ``eval/HOOK/``), in the SAE folder,
        in a ``bench`` folder beside them, or in the workspace's ``bench/NAME/HOOK/`` (``sae bench --out
        bench/`` over several SAEs). The one place that knows the location."""
        folder = ref.sae_dir.parent
        bench = self.root / "bench"  # `sae bench --out bench/` over several SAEs: bench/NAME/HOOK/
        for d in (ref.eval_dir, folder / "eval" / ref.hook, ref.sae_dir, ref.sae_dir / "bench", folder / "bench" / ref.hook,
                  folder / "bench", folder / "eval", bench / ref.name / ref.hook, bench / ref.hook):
            if d is not None and (d / "explanations.csv").is_file():
                return d / "explanations.csv"
        return None

    def explanations(self, ref: "SaeRef") -> pd.DataFrame | None:
        """``explanations.csv`` (feature, explanation, precision, recall, f1) indexed by feature, or None."""
        path = self.explanations_file(ref)
        if path is None:
            return None
        df = self.table(path, f"SAE {ref.key} explanations")
        if not {"feature", "explanation"} <= set(df.columns):
            raise _part_error(f"SAE {ref.key}: {path} lacks the columns feature, explanation (has {list(df.columns)})")
        return df.drop_duplicates("feature").set_index("feature")

    def density_url(self, ref: "SaeRef") -> str | None:
        """URL of ``sae eval``'s ``density.html`` of ``ref`` (served by ``/files/``), or None."""
        if ref.eval_dir is None or not (ref.eval_dir / "density.html").is_file():
            return None
        p = (ref.eval_dir / "density.html").resolve()
        return "/files/" + p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else None

    def feature_examples(self, ref: "SaeRef", feature: int, n_top: int = 10, n_bands: int = 5) -> dict:
        """A feature's examples (:mod:`apps.examples`): ``top`` (the ``n_top`` strongest firing events,
        one row each), ``bands`` (activation bands with frame counts over the sampled frames),
        ``band_examples`` (one event per band), ``act_max`` (for a shared activation axis) and
        ``sampled`` (frames sampled, of how many). Sources: the sampled whole clips and ``sae eval``'s
        ``top_frames.parquet``."""
        from apps.examples import band_examples, events, quantile_bands

        codes, frames = _sampled_codes(self, ref, _mtime(ref.sae_dir / "sae_weights.safetensors"))
        mine = codes[codes["feature"] == feature]
        hits = frames.iloc[mine["row"].to_numpy()].reset_index(drop=True).assign(
            activation=mine["activation"].to_numpy())
        if ref.eval_dir is not None and (ref.eval_dir / "top_frames.parquet").is_file():
            top = self.top_frames(ref)
            hits = pd.concat([top[top["feature"] == feature].drop(columns=["feature", "rank", "row"], errors="ignore"),
                              hits], ignore_index=True)
        ev = events(hits)
        bands = quantile_bands(mine["activation"].to_numpy(), n_bands)
        act_max = float(hits["activation"].max()) if len(hits) else None
        return {"top": ev.head(n_top), "n_events": len(ev), "bands": bands, "band_examples": band_examples(ev, bands),
                "act_max": act_max, "sampled": (len(frames), self.sae_cache(ref).n_frames(ref.hook))}

    def clip_codes(self, ref: "SaeRef", clip_id: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Frame-table rows and SAE codes ``[T, d_sae]`` of one cached clip (one small encode)."""
        return _clip_codes(self, ref, clip_id, _mtime(ref.sae_dir / "sae_weights.safetensors"))

    def quantile_examples(self, ref: "SaeRef", feature: int, n: int = 4) -> pd.DataFrame:
        """``n`` frames where ``feature`` fires, one from each activation quantile bin (low to high)."""
        codes, frames = _sampled_codes(self, ref, _mtime(ref.sae_dir / "sae_weights.safetensors"))
        hits = codes[codes["feature"] == feature].sort_values("activation")
        if hits.empty:
            return pd.DataFrame(columns=["activation", "quantile", *frames.columns])
        picks = [b[len(b) // 2] for b in np.array_split(np.arange(len(hits)), min(n, len(hits)))]
        rows = hits.iloc[picks]
        info = frames.iloc[rows["row"].to_numpy()].reset_index(drop=True)
        q = [(i + 0.5) / len(picks) for i in range(len(picks))]
        return pd.concat([pd.DataFrame({"activation": rows["activation"].to_numpy(), "quantile": q}), info], axis=1)


@functools.lru_cache(maxsize=64)
def _clip_codes(ws, ref, clip_id: str, mtime: float) -> tuple[pd.DataFrame, np.ndarray]:
    cache = ws.sae_cache(ref)
    if clip_id not in cache.clip_ids:
        raise _part_error(f"clip {clip_id!r} is not in cache {cache.root}")
    rows = cache.select(ref.hook, clips=[clip_id])
    codes = ws.feature_dictionary(ref).encode_numpy(cache.load(ref.hook, rows))
    return cache.frames(ref.hook).iloc[rows].reset_index(drop=True), codes


@functools.lru_cache(maxsize=8)
def _sampled_codes(ws, ref, mtime: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Non-zero codes (``row``, ``feature``, ``activation``) of whole cache clips, seeded random clips
    up to QUANTILE_SAMPLE frames (every clip when they fit), and their frame-table rows: encoded once
    per SAE, in chunks. Whole clips, so a feature's firing events can be told apart."""
    cache = ws.sae_cache(ref)
    frames_all = cache.frames(ref.hook)
    clip_of = frames_all["clip_id"].to_numpy()
    clips = pd.unique(clip_of)
    order = np.random.default_rng(0).permutation(len(clips))
    sizes = pd.Series(clip_of).value_counts()
    keep, total = set(), 0
    for i in order:
        n = int(sizes[clips[i]])
        if total and total + n > QUANTILE_SAMPLE:
            continue
        keep.add(clips[i])
        total += n
    rows = np.flatnonzero(pd.Series(clip_of).isin(keep).to_numpy())
    fd = ws.feature_dictionary(ref)
    parts = []
    for a in range(0, len(rows), 4096):
        z = fd.encode_numpy(cache.load(ref.hook, rows[a:a + 4096]))
        r, f = np.nonzero(z)
        parts.append(pd.DataFrame({"row": r + a, "feature": f, "activation": z[r, f]}))
    codes = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["row", "feature", "activation"])
    return codes, frames_all.iloc[rows].reset_index(drop=True)


def _part_error(msg: str):
    from apps.data import PartError

    return PartError(msg)
