"""The app's one view of a workspace: discover its parts and read them through the public types.

A workspace (``../shared/DESIGN.md``) holds ``corpora/``, ``caches/``, ``saes/``, ``probes/``,
``steering/``, ``neuro/`` and ``conditions/`` (``workbench conditions`` runs; and optionally
``workspace.json``, which says which command made each part). Every reader here raises
:class:`PartError` with a message fit for a page when a part is missing or half-written; pages show that message instead of a traceback. Files are re-read
when they change (results are memoised on path and modification time).

Example
-------
>>> ws = Workspace("workspace/demo")                      # doctest: +SKIP
>>> [p.kind + "/" + p.name for p in ws.parts()]           # doctest: +SKIP
['corpora/synth', 'caches/tiny', 'saes/block3/encoder.blocks.3.hook_resid_post', 'probes/phones']
>>> ws.feature_table(ws.saes()[0]).head()                 # doctest: +SKIP
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from apps.data_conditions import ConditionRuns
from apps.data_features import QUANTILE_SAMPLE, SaeExamples  # noqa: F401  (QUANTILE_SAMPLE: public here too)
from workbench.atomic import read_json
from workbench.audio import AUDIO_EXTENSIONS
from workbench.cache import ActivationCache
from workbench.corpus import Corpus, load_corpus
from workbench.features import FeatureDictionary, is_sae_dir

KINDS = ("corpora", "caches", "saes", "probes", "steering", "neuro", "conditions")
#: Files the app may serve from inside the workspace (audio players and figure images).
SERVABLE = tuple(AUDIO_EXTENSIONS) + (".png", ".jpg", ".jpeg", ".svg")
TOKENS_HOOK, COCHLEAGRAM_HOOK = "tokens.hook_ids", "cochleagram.hook_out"
#: the sae eval metrics shown beside an SAE (names as sae.metrics.evaluate writes them)
SAE_HEADLINE_METRICS = ("fvu", "l0", "dead_frac")


class PartError(RuntimeError):
    """A part of the workspace is missing, half-written or unreadable; the message says which file."""


@dataclass
class Part:
    """One thing the workspace holds: ``kind`` (a folder of the layout), ``name``, ``path``, key figures."""

    kind: str
    name: str
    path: Path
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class SaeRef:
    """A saved SAE (``saes/NAME/HOOK/``) and the folder with its ``sae eval`` summaries, if any."""

    name: str
    hook: str
    sae_dir: Path
    eval_dir: Path | None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.hook}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def _guard(path: Path, what: str, reader):
    """``reader(path)`` with any failure turned into a :class:`PartError` naming the file."""
    if not path.exists():
        raise PartError(f"{what}: {path.name} is missing in {path.parent} (not written yet?)")
    try:
        return reader(path)
    except PartError:
        raise
    except Exception as e:  # a half-written file can fail in many ways; the page shows which file
        raise PartError(f"{what}: cannot read {path} ({type(e).__name__}: {e})") from e


@functools.lru_cache(maxsize=64)
def _read_table(path: Path, mtime: float) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


@functools.lru_cache(maxsize=64)
def _read_json(path: Path, mtime: float) -> Any:
    return read_json(path)


@functools.lru_cache(maxsize=16)
def _open_cache(path: Path, mtime: float) -> ActivationCache:
    return ActivationCache.open(path)


@functools.lru_cache(maxsize=16)
def _load_fd(path: Path, mtime: float) -> FeatureDictionary:
    return FeatureDictionary.load(path)


class Workspace(SaeExamples, ConditionRuns):
    """Read-only access to the workspace directory ``root`` (see module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"workspace {root} is not a directory")

    # --- generic readers ------------------------------------------------------------------------
    def table(self, path: Path, what: str) -> pd.DataFrame:
        return _guard(path, what, lambda p: _read_table(p, _mtime(p)))

    def json(self, path: Path, what: str) -> Any:
        return _guard(path, what, lambda p: _read_json(p, _mtime(p)))

    def index(self) -> dict:
        """``workspace.json`` (``{"parts": {"kind/name": {"command": ...}}}``) or ``{}``."""
        path = self.root / "workspace.json"
        try:
            doc = _read_json(path, _mtime(path)) if path.is_file() else {}
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def folders(self, kind: str) -> list[Path]:
        base = self.root / kind
        return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []

    def part_dir(self, kind: str, name) -> Path:
        """The folder of part ``name`` of ``kind`` (``probes``, ``steering``, ``neuro``, ...): the one
        gate for every part name that comes from a client (a URL, a picker, a callback's input).

        Only the names :meth:`folders` lists are accepted (an allow-list: a single path component,
        no ``..``, not absolute, resolving inside the workspace); anything else gets the same
        :class:`PartError` listing the valid names, so a probe like ``../../etc`` learns nothing about
        what exists outside the workspace.

        >>> Workspace(".").part_dir("probes", "../../etc")          # doctest: +SKIP
        Traceback (most recent call last):
        PartError: no probes run '../../etc' in this workspace; runs: phones
        """
        if kind not in KINDS:
            raise PartError(f"no part kind {kind!r}; kinds: {', '.join(KINDS)}")
        ok = {p.name: p for p in self.folders(kind) if p.resolve().is_relative_to(self.root)}
        if not isinstance(name, str) or name not in ok:
            shown = repr(name)[:80]
            raise PartError(f"no {kind} run {shown} in this workspace; runs: {', '.join(ok) or 'none'}")
        return ok[name]

    def url(self, path: str | os.PathLike) -> str | None:
        """The app URL serving ``path`` (``/files/...``), or None when it lies outside the workspace."""
        p = Path(path).resolve()
        if not p.is_relative_to(self.root) or p.suffix.lower() not in SERVABLE:
            return None
        return "/files/" + p.relative_to(self.root).as_posix()

    # --- discovery ------------------------------------------------------------------------------
    def parts(self, kind: str | None = None) -> list[Part]:
        """Every part of the workspace (or of one ``kind``) with its key figures or the error reading it."""
        commands = {k: (v or {}).get("command") for k, v in (self.index().get("parts") or {}).items()
                    if isinstance(v, dict)}
        out = []
        for k in ([kind] if kind else KINDS):
            describe = getattr(self, f"_describe_{k}")
            for item in (self.saes() if k == "saes" else self.folders(k)):
                name = item.key if k == "saes" else item.name
                path = item.sae_dir if k == "saes" else item
                part = Part(k, name, path, command=commands.get(f"{k}/{name}") or commands.get(f"{k}/{path.name}"))
                try:
                    part.figures = describe(item)
                except (PartError, OSError, ValueError, KeyError, RuntimeError) as e:
                    part.error = str(e)
                out.append(part)
        return out

    def _describe_corpora(self, path: Path) -> dict:
        s = _summary(self.corpus(path.name))
        return {"clips": s["clips"], "minutes": round(s["hours"] * 60, 2), "domains": s["domains"],
                "speakers": len(s["speakers"]), "tiers": s["tiers"]}

    def _describe_caches(self, path: Path) -> dict:
        c = self.cache(path.name)
        return {"model": c.meta["model"]["spec"], "hooks": len(c.hooks), "clips": len(c.clip_ids),
                "frames": c.n_frames(c.hooks[0]) if c.hooks else 0, "dtype": c.dtype}

    def _describe_saes(self, ref: SaeRef) -> dict:
        fd = self.feature_dictionary(ref)
        # Batch-Top-K: k is the mean number of active features per frame over a training batch, so a
        # frame's L0 varies around it; the card says so beside the measured per-frame mean
        out = {"hook": ref.hook, "d_in": fd.d_in, "d_sae": fd.d_sae, "k (Batch-Top-K: batch mean, not per frame)": fd.k}
        if ref.eval_dir is not None and (ref.eval_dir / "eval.json").is_file():
            m = self.sae_eval(ref).get("metrics", {})
            out.update({("l0 (measured mean per frame)" if k == "l0" else k): m[k] for k in SAE_HEADLINE_METRICS if k in m})
        else:
            out["eval"] = "not evaluated yet (run `workbench sae eval`)"
        return out

    def _describe_probes(self, path: Path) -> dict:
        doc = self.json(path / "summary.json", f"probe run {path.name}")
        summary = pd.DataFrame(doc.get("summary", []))
        best = summary.loc[summary["accuracy"].idxmax()] if len(summary) else None
        return {"target": doc.get("config", {}).get("target"), "layers": len(summary),
                "best_hook": doc.get("best_hook"), "best_accuracy": None if best is None else round(best["accuracy"], 3)}

    def _describe_steering(self, path: Path) -> dict:
        doc = self.json(path / "steering.json", f"steering {path.name}")
        out = {"hook": doc.get("hook"), "method": doc.get("method"), "features": len(doc.get("features") or [])}
        ev = path / "eval" / "eval.json"
        if ev.is_file():
            e = self.json(ev, f"steering {path.name} evaluation")
            for arm in ("baseline", "steered"):
                if isinstance(e.get(arm), dict):
                    out[f"{arm} hallucination"] = e[arm].get("hallucination_rate")
        return out

    def _describe_neuro(self, path: Path) -> dict:
        summary = self.table(path / "summary.csv", f"neuro {path.name}")
        out = {"rows": len(summary)}
        if len(summary) and "r" in summary:
            best = summary.loc[summary["r"].idxmax()]
            out.update({"best r": round(float(best["r"]), 3), "best feature": str(best.get("feature"))})
        if "p_fdr" in summary:
            out["significant (FDR < 0.05)"] = int((summary["p_fdr"] < 0.05).sum())
        return out

    # --- corpora and caches ---------------------------------------------------------------------
    def corpus(self, name: str) -> Corpus:
        path = self.root / "corpora" / name
        return _guard(path / "manifest.jsonl", f"corpus {name}", lambda p: _corpus(path, _mtime(p)))

    def cache(self, name_or_path: str | os.PathLike) -> ActivationCache:
        path = Path(name_or_path)
        path = path if path.is_absolute() else self.root / "caches" / path
        return _guard(path / "cache.json", f"cache {path.name}", lambda p: _open_cache(path, _mtime(path / "index.json")))

    def caches_with(self, hook: str) -> list[ActivationCache]:
        """Caches of the workspace that hold ``hook`` (unreadable ones are left out)."""
        found = []
        for p in self.folders("caches"):
            try:
                c = self.cache(p.name)
            except PartError:
                continue
            if hook in c.hooks:
                found.append(c)
        return found

    def find_clip(self, clip_id: str):
        """``(corpus, clip)`` for ``clip_id`` from the workspace's corpora or caches, or ``(None, None)``."""
        sources = [(p / "manifest.jsonl", "corpus") for p in self.folders("corpora")] + \
                  [(p / "corpus.jsonl", "cache") for p in self.folders("caches")]
        return _clip_index(self, tuple((f, kind, _mtime(f)) for f, kind in sources)).get(clip_id, (None, None))

    def clip_url(self, corpus: Corpus, clip, start_s: float | None = None, end_s: float | None = None) -> str | None:
        """Audio URL of ``clip`` (a media fragment ``#t=a,b`` plays just that segment), None if outside."""
        url = self.url(corpus.audio_path(clip))
        if url and start_s is not None:
            url += f"#t={max(start_s, 0):.2f},{end_s:.2f}"
        return url

    # --- SAEs -----------------------------------------------------------------------------------
    def saes(self) -> list[SaeRef]:
        """SAEs under ``saes/NAME/`` (one SAE, or one per hook) with their ``eval/HOOK/`` summaries."""
        refs = []
        for folder in self.folders("saes"):
            dirs = [folder] if is_sae_dir(folder) else sorted(p for p in folder.iterdir() if p.is_dir() and is_sae_dir(p))
            for d in dirs:
                hook = self._hook_of(d)
                evals = [e for e in (folder / "eval" / hook, d / "eval", folder / "eval") if (e / "features.parquet").exists()]
                refs.append(SaeRef(folder.name, hook, d, evals[0] if evals else None))
        return refs

    def sae(self, key: str) -> SaeRef:
        for ref in self.saes():
            if ref.key == key:
                return ref
        raise PartError(f"no SAE {key!r} in {self.root / 'saes'}")

    def _hook_of(self, d: Path) -> str:
        try:
            cfg = json.loads((d / "cfg.json").read_text())
        except (OSError, ValueError):
            return d.name
        return cfg.get("hook_name") or (cfg.get("metadata") or {}).get("hook_name") or d.name

    def feature_dictionary(self, ref: SaeRef) -> FeatureDictionary:
        w = ref.sae_dir / "sae_weights.safetensors"
        return _guard(w, f"SAE {ref.key}", lambda p: _load_fd(ref.sae_dir, _mtime(p)))

    def _eval_file(self, ref: SaeRef, name: str) -> Path:
        if ref.eval_dir is None:
            raise PartError(f"SAE {ref.key} has no per-feature summaries yet: run `workbench sae eval --sae "
                            f"{ref.sae_dir.parent} --cache CACHE --out {ref.sae_dir.parent / 'eval'}`")
        return ref.eval_dir / name

    def feature_table(self, ref: SaeRef) -> pd.DataFrame:
        return self.table(self._eval_file(ref, "features.parquet"), f"SAE {ref.key} features")

    def top_frames(self, ref: SaeRef) -> pd.DataFrame:
        return self.table(self._eval_file(ref, "top_frames.parquet"), f"SAE {ref.key} top frames")

    def histograms(self, ref: SaeRef) -> dict:
        return self.json(self._eval_file(ref, "histograms.json"), f"SAE {ref.key} histograms")

    def sae_eval(self, ref: SaeRef) -> dict:
        path = self._eval_file(ref, "eval.json")
        return self.json(path, f"SAE {ref.key} evaluation") if path.is_file() else {}

    def sae_cache(self, ref: SaeRef) -> ActivationCache:
        """The cache the SAE was evaluated on (``eval.json``), else a workspace cache with its hook."""
        cache_path = self.sae_eval(ref).get("cache") if ref.eval_dir else None
        if cache_path and Path(cache_path, "cache.json").is_file():
            return self.cache(Path(cache_path).resolve())
        found = self.caches_with(ref.hook)
        if not found:
            raise PartError(f"SAE {ref.key}: no cache in {self.root / 'caches'} holds {ref.hook}")
        return found[0]

    # --- cochlear tokens ------------------------------------------------------------------------
    def token_sources(self) -> list[dict]:
        """``[{"name", "tokens": cache, "cochleagram": cache or None}]``: caches with ``tokens.hook_ids``,
        each paired with a cochleagram cache of the same corpus (or the same cache) when there is one."""
        coch = [c for c in self.caches_with(COCHLEAGRAM_HOOK)]
        out = []
        for c in self.caches_with(TOKENS_HOOK):
            same = [g for g in coch if g.root == c.root] or [
                g for g in coch if g.meta["corpus"].get("fingerprint") == c.meta["corpus"].get("fingerprint")]
            out.append({"name": c.root.name, "tokens": c, "cochleagram": same[0] if same else None})
        return out

    def token_source(self, name: str) -> dict:
        for src in self.token_sources():
            if src["name"] == name:
                return src
        raise PartError(f"no cache {name!r} with {TOKENS_HOOK} in {self.root / 'caches'}")

    def token_ids(self, src: dict) -> np.ndarray:
        """Every cached token id (int) in frame-table order."""
        return _token_ids(src["tokens"], _mtime(src["tokens"].root / "index.json"))

    def cochleagram_rows(self, src: dict, clip_id: str, frames: np.ndarray) -> np.ndarray:
        """Cochleagram ``[*frames.shape, channels]`` of ``clip_id`` at token frame indices ``frames``
        (rows past the clip's end are NaN: both caches run at 200 Hz but may differ by a frame)."""
        g = src["cochleagram"]
        if g is None:
            raise PartError(f"no cochleagram cache ({COCHLEAGRAM_HOOK}) for the corpus of {src['name']}: run "
                            "`workbench cache --model cochleagram --hooks cochleagram.hook_out ...`")
        rows = g.select(COCHLEAGRAM_HOOK, clips=[clip_id])
        flat = np.asarray(frames).reshape(-1)
        ok = (flat >= 0) & (flat < len(rows))
        out = np.full((len(flat), g.d_model(COCHLEAGRAM_HOOK)), np.nan, dtype=np.float32)
        out[ok] = g.load(COCHLEAGRAM_HOOK, rows[flat[ok]])
        return out.reshape(*np.shape(frames), -1)

    # --- probes, neuro, steering ----------------------------------------------------------------
    def probe(self, name: str) -> dict:
        """``{"summary", "folds", "confusion" (best layer), "confusions" ({hook: matrix}, maybe empty),
        "config", "best_hook"}`` of ``probes/NAME``."""
        path = self.part_dir("probes", name)
        doc = self.json(path / "summary.json", f"probe run {name}")
        out = {"summary": pd.DataFrame(doc.get("summary", [])), "config": doc.get("config", {}),
               "best_hook": doc.get("best_hook"), "folds": None, "confusion": None}
        if (path / "folds.csv").is_file():
            out["folds"] = self.table(path / "folds.csv", f"probe run {name}")
        if (path / "confusion.csv").is_file():
            out["confusion"] = self.table(path / "confusion.csv", f"probe run {name}").set_index("true")
        out["confusions"] = {}  # every layer's, when the run wrote confusion_layers.csv
        if (path / "confusion_layers.csv").is_file():
            allc = self.table(path / "confusion_layers.csv", f"probe run {name}")
            out["confusions"] = {str(h): g.drop(columns="hook").set_index("true") for h, g in allc.groupby("hook")}
        if out["summary"].empty:
            raise PartError(f"probe run {name}: {path / 'summary.json'} lists no layers yet")
        return out

    def neuro(self, name: str) -> dict:
        """Tables, TRF kernels and topomaps of ``neuro/NAME`` (the layout :mod:`neuro` documents;
        only ``summary.csv`` is required)."""
        path = self.part_dir("neuro", name)
        out: dict[str, Any] = {"summary": self.table(path / "summary.csv", f"neuro {name}"), "path": path}
        for key in ("layers", "features"):
            f = path / f"{key}.csv"
            out[key] = self.table(f, f"neuro {name}") if f.is_file() else None
        out["meta"] = self.json(path / "neuro.json", f"neuro {name}") if (path / "neuro.json").is_file() else {}
        # kernels/SET.npy and topomaps/SET.png (neuro's layout), or files at the top of the run
        out["trf"] = {p.stem: _guard(p, f"neuro {name}", np.load) for pat in ("kernels/*.npy", "*.npy")
                      for p in sorted(path.glob(pat))}
        out["images"] = [u for pat in ("topomaps/*.png", "*.png") for p in sorted(path.glob(pat)) if (u := self.url(p))]
        return out

    def steering(self, name: str) -> dict:
        """``steering.json``, ``sweep.csv`` and ``eval/eval.json`` of ``steering/NAME`` (the last two optional)."""
        path = self.part_dir("steering", name)
        out: dict[str, Any] = {"spec": self.json(path / "steering.json", f"steering {name}"), "path": path}
        out["sweep"] = self.table(path / "sweep.csv", f"steering {name}") if (path / "sweep.csv").is_file() else None
        ev = path / "eval" / "eval.json"
        out["eval"] = self.json(ev, f"steering {name} evaluation") if ev.is_file() else None
        return out


@functools.lru_cache(maxsize=64)
def _corpus(path: Path, mtime: float) -> Corpus:
    return load_corpus(path)


@functools.lru_cache(maxsize=64)
def _summary(corpus: Corpus) -> dict:
    return corpus.summary()


@functools.lru_cache(maxsize=4)
def _clip_index(ws: Workspace, sources: tuple) -> dict:
    """``{clip_id: (corpus, clip)}`` over the corpora and cache corpora ``sources`` (first one wins)."""
    index: dict = {}
    for path, kind, _ in sources:
        try:
            corpus = ws.corpus(path.parent.name) if kind == "corpus" else ws.cache(path.parent.name).corpus
        except (PartError, OSError, ValueError):
            continue
        for clip in corpus:
            index.setdefault(clip.id, (corpus, clip))
    return index


@functools.lru_cache(maxsize=8)
def _token_ids(cache: ActivationCache, mtime: float) -> np.ndarray:
    return np.asarray(cache.acts(TOKENS_HOOK)[:, 0], dtype=np.int64)
