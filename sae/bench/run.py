"""``workbench sae bench``: every bench family for one or several SAEs on held-out clips of a cache.

Writes into ``out``:

- ``bench.csv`` and ``bench.json``: one row per SAE (core, sparse probing, absorption, targeted
  erasure, consistency with another SAE of the same shape, explanation scores); ``bench.json``
  also keeps the nested per-class results;
- ``bench.html`` (plotly; ``bench.png`` too when kaleido is installed): one panel per headline figure;
- per SAE, in ``out/HOOK/`` (one ``--sae`` argument) or ``out/NAME/HOOK/`` (several): ``explanations.csv``
  (``feature, explanation, precision, recall, f1``, then more columns; :mod:`sae.bench.explain`) and
  ``bench.json`` (that SAE's row). With ``--out saes/NAME/eval`` this is the workspace layout
  ``saes/NAME/eval/HOOK/`` beside ``sae eval``'s ``eval.json``.

Example
-------
>>> rows = run_bench(["work/saes/s0", "work/saes/s1"], cache, model, "work/bench")     # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sae.bench.saes import find_saes, load_bench_sae

log = logging.getLogger(__name__)


def _vowels():
    from sae.bench.absorption import PHONE_CLASSES

    return PHONE_CLASSES["vowel"]


def _selection(cache, folder: Path, hook: str, holdout_file, max_frames: int, seed: int):
    from sae.holdout import eval_selection

    sel = eval_selection(cache, folder if folder.is_dir() else folder.parent, holdout_file)
    pool = cache.select(hook, clips=sel["clips"])
    rows = np.sort(np.random.default_rng(seed).choice(pool, size=min(len(pool), max_frames), replace=False))
    return sel, rows


def bench_one(sae, cache, hook: str, rows: np.ndarray, frames: pd.DataFrame, X: torch.Tensor, descriptors,
              model=None, clip_ids=None, splice_clips: int = 5, seed: int = 0, families=None,
              dest: Path | None = None, verbose: bool = False, clean_memo: dict | None = None,
              norm_limit: float | None = None) -> tuple[dict, dict]:
    """All bench families for one SAE on frames ``X`` (rows ``rows`` of ``cache``), described by
    ``frames`` and ``descriptors``. ``norm_limit``: the SAE's training filter (:mod:`sae.massive`):
    massive frames are spliced through and left out of every family but the all-frames core figures.
    Returns ``(flat row, nested results)``; writes ``dest/explanations.csv``."""
    from sae.bench import absorption as ab
    from sae.bench import core, erasure, explain, labels, probing
    from workbench.atomic import atomic_path

    families = set(families or ("core", "splice", "probing", "absorption", "erasure", "explain"))
    row: dict = {"hook": hook, "d_sae": sae.d_sae, "k": sae.cfg.k, "frames": len(X),
                 "trained_on_massive": norm_limit is None}
    nested: dict = {}
    t0 = time.perf_counter()
    last = [t0]

    def lap(family: str) -> None:  # seconds per family, where the time goes
        now = time.perf_counter()
        if family in families:
            row[f"seconds_{family}"] = now - last[0]
            log.info("%s: %s %.1f s", dest or "", family, now - last[0])
        last[0] = now

    if "core" in families:
        m = core.core_metrics(sae, X, norm_limit)
        m.pop("density")
        row.update(m)
    lap("core")
    if "splice" in families and model is not None:
        row.update(core.splice_metrics(model, sae, hook, cache, clip_ids, splice_clips, verbose=verbose,
                                       clean_memo=clean_memo, norm_limit=norm_limit))
    if norm_limit is not None:  # the other families read the frames the SAE is a model of (sae.massive)
        from sae.massive import split_massive

        keep = ~split_massive(X, norm_limit)[0]
        X, frames = X[torch.from_numpy(keep)], frames[keep].reset_index(drop=True)
        descriptors = descriptors[keep].reset_index(drop=True) if descriptors is not None else None
    Z = None
    if families & {"probing", "explain"}:
        Z = sae.encode_numpy(X.numpy())
    lap("splice")
    if "probing" in families:
        res = probing.sparse_probing(Z, X.numpy(), frames, seed=seed)
        nested["sparse_probing"] = res
        for task, r in res.items():
            for k, v in r["sae"].items():
                row[f"probe_{task}_sae_k{k}"] = v
            for k, v in r["raw"].items():
                row[f"probe_{task}_raw_k{k}"] = v
            if "raw_full" in r:
                row[f"probe_{task}_raw_full"] = r["raw_full"]
    lap("probing")
    if "absorption" in families:
        res = ab.phone_class_absorption(sae, X.numpy(), frames, seed=seed)
        nested["absorption"] = res
        if res:
            row["absorption_mean"] = res["mean_absorption_rate"]
            for name, r in res["classes"].items():
                row[f"absorption_{name}"] = r.get("absorption_rate")
    lap("absorption")
    if "erasure" in families:
        concepts = erasure.frame_erasure_concepts(frames, ab.PHONE_CLASSES)
        if concepts:
            groups = _groups(frames)
            train = explain.split_by_group(groups, 0.7, seed) if len(set(groups)) > 1 else None
            if train is not None:
                res = erasure.targeted_erasure(sae, X, concepts, train, seed=seed)
                nested["targeted_erasure"] = res
                row.update(tpp=res["tpp"], tpp_own_drop=res["own_drop"], tpp_other_drop=res["other_drop"])
        fr = erasure.erasure_fractions(sae, X, frames, seed=seed, vowels=_vowels())
        nested["erasure_fraction"] = fr
        row.update({f"erase_{k}_frac": v for k, v in fr.items()})
    lap("erasure")
    if "explain" in families:
        concepts = labels.frame_concepts(frames, descriptors)
        groups, row["expl_split"] = explain_groups(frames)
        if row["expl_split"] != "source":
            log.warning("%s: the held-out frames come from one source recording: explanations are fitted and "
                        "scored on different clips (segments) of it", dest or "")
        fit = explain.split_by_group(groups, 0.5, seed)
        table = explain.explain_features(Z, concepts, fit)
        dist = explain.f1_distribution(table)
        nested["explanations"] = dist
        row.update({f"expl_{k}": v for k, v in dist.items() if not isinstance(v, dict)})
        if dest is not None:
            dest.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest / "explanations.csv") as tmp:
                table.to_csv(tmp, index=False, float_format="%.4f")
    lap("explain")
    row["seconds"] = time.perf_counter() - t0
    return row, nested


def explain_groups(frames: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Groups the explanations' fit / test halves are drawn by, and which: source recordings
    (:func:`workbench.conventions.frame_groups` ``by="clip"``) when there are at least two, else the
    clips (segments of one recording on both sides: said in the row's ``expl_split``).

    >>> f = pd.DataFrame({"clip_id": ["a", "a", "b"], "source_id": ["s", "s", "s"]})
    >>> explain_groups(f)[1], sorted(set(explain_groups(f)[0]))
    ('clip (one source recording)', ['a', 'b'])
    """
    from workbench.conventions import frame_groups

    groups = frame_groups(frames, by="clip")
    if len(set(groups)) >= 2:
        return groups, "source"
    return frames["clip_id"].astype(str).to_numpy(), "clip (one source recording)"


def _groups(frames: pd.DataFrame) -> np.ndarray:
    from workbench.conventions import frame_groups

    return frame_groups(frames, by="speaker")


def run_bench(sae_args, cache, model, out: str | os.PathLike, hook: str | None = None, max_frames: int = 20_000,
              splice_clips: int = 5, holdout_file=None, seed: int = 0, families=None, verbose: bool = True) -> pd.DataFrame:
    """Bench every SAE named by ``sae_args`` (see :func:`sae.bench.saes.find_saes`) on ``cache``; writes the
    files listed in the module docstring and returns the bench table."""
    from sae.analyses import seed_consistency
    from sae.massive import recorded_filter
    from workbench.acoustics import corpus_descriptors
    from workbench.atomic import write_json

    out = Path(out)
    named = find_saes(sae_args)
    several = len(sae_args) > 1
    rows, nested_all, loaded = [], {}, []
    descriptor_memo: dict = {}
    clean_memo: dict = {}
    for name, path in named:
        t_start = time.perf_counter()
        sae = load_bench_sae(path, name)
        h = hook or sae.cfg.hook_name or (cache.hooks[0] if len(cache.hooks) == 1 else "")
        if h not in cache.hooks:
            raise ValueError(f"{path}: hook {h!r} is not in cache {cache.root} (cached: {cache.hooks}); pass --hook")
        if cache.d_model(h) != sae.d_in:
            raise ValueError(f"{path}: SAE d_in={sae.d_in} but hook {h!r} of {cache.root} has d_model={cache.d_model(h)}")
        sel, sel_rows = _selection(cache, path, h, holdout_file, max_frames, seed)
        if sel["in_sample"]:
            log.warning("%s: no holdout.json and no --holdout-file: bench figures are IN-SAMPLE", path)
        X = torch.from_numpy(cache.load(h, sel_rows))
        frames = cache.frames(h).iloc[sel_rows].reset_index(drop=True)
        key = (h, tuple(sel_rows[:50]), len(sel_rows))
        t_desc = time.perf_counter()
        if key not in descriptor_memo and (families is None or "explain" in families):
            descriptor_memo[key] = corpus_descriptors(frames, cache.corpus, progress=verbose)
        t_desc = time.perf_counter() - t_desc
        sub = (Path(name.split("/")[0]) if several else Path()) / h
        trained = recorded_filter(path if path.is_dir() else path.parent, h)
        limit = None
        if trained:  # a limit not recorded (older cache runs): the ratio x the median norm of these frames
            from sae.massive import split_massive

            limit = trained.get("norm_limit") or split_massive(X, None, trained.get("max_norm_ratio", 10.0))[1]
        row, nested = bench_one(sae, cache, h, sel_rows, frames, X, descriptor_memo.get(key), model, sel["clips"],
                                splice_clips, seed, families, out / sub, verbose, clean_memo, norm_limit=limit)
        row = {"name": name, "path": str(path), "format": sae.format, "in_sample": sel["in_sample"], **row,
               "explanations": str(out / sub / "explanations.csv") if (out / sub / "explanations.csv").is_file() else ""}
        row["seconds_descriptors"] = t_desc
        row["seconds_total"] = time.perf_counter() - t_start
        rows.append(row)
        nested_all[name] = nested
        loaded.append((name, sae, h, X))
        write_json(out / sub / "bench.json", {"row": row, **nested}, indent=2, default=_json_default)
        if verbose:
            log.info("%s: %.1f s", name, row["seconds_total"])
    _consistency(rows, loaded, seed_consistency)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    from workbench.atomic import atomic_path

    with atomic_path(out / "bench.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.5g")
    write_json(out / "bench.json", {"cache": str(cache.root), "model": getattr(model, "spec", None),
                                    "rows": rows, "details": nested_all}, indent=2, default=_json_default)
    from sae.bench.plot import write_bench_figure

    write_bench_figure(table, out)
    return table


def _consistency(rows, loaded, seed_consistency) -> None:
    """Each SAE against the next one with the same hook and size (seed pairs): best-match firing IoU
    and Hungarian decoder match (:func:`sae.analyses.seed_consistency`) on its own held-out frames."""
    for i, (name, sae, h, X) in enumerate(loaded):
        for other_name, other, h2, _ in loaded[i + 1 :] + loaded[:i]:
            if h2 == h and other.d_sae == sae.d_sae and other.d_in == sae.d_in:
                c = seed_consistency(sae, other, X)
                rows[i].update(consistency_with=other_name, consistency_iou_frac=c["fraction_consistent"],
                               consistency_hungarian_frac=c["fraction_hungarian_above"],
                               consistency_mean_best_cos=c["mean_best_cosine"])
                break


def _json_default(o):
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
